"""The Black-Scholes price of a European call, and its Greeks as gradients.

The normal CDF is written with ``math.erf``; the user rule ``norm_cdf_backward`` gives its
derivative, the normal density, in one line. The price's backward calls
it once per ``norm_cdf`` of the forward. Its gradients are the option's Greeks: delta
(S), the dual delta (K), minus theta (T), rho (r) and vega (sigma).
"""

import math

import gradgen


def norm_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@gradgen.backward_of(norm_cdf)
def norm_cdf_backward(x, dout):
    return dout * math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def call_price(S, K, T, r, sigma):
    # S: spot price, K: strike, T: years to expiry, r: risk-free rate, sigma: volatility
    vol = sigma * math.sqrt(T)  # the standard deviation of log(S) at expiry
    log_moneyness = math.log(S / K)
    drift = (r + 0.5 * sigma**2) * T
    d1 = (log_moneyness + drift) / vol
    d2 = d1 - vol
    discount = math.exp(-r * T)
    N1 = norm_cdf(d1)
    N2 = norm_cdf(d2)
    price = S * N1 - K * discount * N2
    return price
