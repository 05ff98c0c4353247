"""Loops over a fixed number of steps on numbers: an Euler integration and Newton's method.

``oscillator_energy`` integrates a damped spring with explicit Euler steps and returns the
final energy; its backward walks the steps back, adding into the gradients of the spring
constant ``k`` and the damping ``c`` at each step. ``cube_root_ish`` solves ``x**3 + x = a``
with six Newton steps from ``x = 1``: the gradient flows back through every step (not only
through the converged answer, as the implicit function theorem would give it).
``solve_until_converged`` runs the same Newton steps in a ``while`` loop until a step
changes ``x`` by less than ``1e-10`` (at most 50 steps): the forward counts the steps it
takes, and the backward walks back that many.
"""

import math


def oscillator_energy(x0, v0, k, c):
    dt = 0.01
    x = x0
    v = v0
    for step in range(300):
        a = -k * x - c * v
        x = x + dt * v
        v = v + dt * a
    energy = 0.5 * v * v + 0.5 * k * x * x
    return energy


def cube_root_ish(a):
    x = 1.0
    for step in range(6):
        x = x - (x * x * x + x - a) / (3.0 * x * x + 1.0)
    return math.tanh(x)


def solve_until_converged(a):
    x = 1.0
    change = 1.0
    steps = 0
    while change > 1e-10 and steps < 50:
        x_next = x - (x * x * x + x - a) / (3.0 * x * x + 1.0)
        change = abs(x_next - x)
        x = x_next
        steps = steps + 1
    return math.tanh(x)
