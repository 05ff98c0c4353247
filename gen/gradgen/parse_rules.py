"""User rules, read from the text: ``@gradgen.backward_of(f)`` on a module-level function.

A rule pairs a forward function gradgen does not look into with the backward the user wrote
for it (``gradgen.user_rules``). Nothing runs: the pair is found by its decorator, the
backward's parameters are checked against the forward's (the forward's parameters, then one
upstream gradient per value it returns), and a parameter the backward returns ``None`` for
(``return dscores, None``) is taken to have no gradient. The generated module copies both
functions, so they may use the module's imports and constants, and nothing else of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from gradgen.convert import dotted_name
from gradgen.parse import ModuleContext, Parameter, ParsedModule, annotated_shape, read_parameters
from gradgen.shapes import Shape

_DECORATOR = "backward_of"


@dataclass(frozen=True)
class UserRule:
    """A forward function and the backward the user wrote for it."""

    forward: str
    backward: str
    parameters: tuple[Parameter, ...]
    results: int  # how many values the forward returns
    shape: Shape | None  # the shape its ``-> float`` or ``-> "N, D"`` annotation gives
    no_gradient: frozenset[str]  # parameters the backward returns None for
    forward_node: cst.FunctionDef = field(repr=False, compare=False)
    backward_node: cst.FunctionDef = field(repr=False, compare=False)
    used_globals: frozenset[str]  # the module's imports and constants the two functions use

    def source(self, module: cst.Module) -> list[str]:
        """The two functions' text for the generated module (the decorator left out)."""
        lines: list[str] = []
        for node in (self.forward_node, self.backward_node):
            plain = node.with_changes(
                decorators=[d for d in node.decorators if not _is_rule_decorator_node(d)],
                leading_lines=[],
            )
            lines += ["", "", *module.code_for_node(plain).rstrip("\n").splitlines()]
        return lines


def read_rules(parsed: ParsedModule) -> dict[str, UserRule]:
    """The module's rules by forward name; problems are refused on ``parsed``."""
    functions = {f.name.value: f for f in parsed.functions}
    rules: dict[str, UserRule] = {}
    for backward in parsed.functions:
        for decorator in backward.decorators:
            named = _rule_target(decorator, parsed.context)
            if named is None:
                continue
            if isinstance(named, cst.CSTNode):
                parsed.refuse(named, "backward_of takes the forward function, by its name")
                continue
            forward = functions.get(named)
            if forward is None:
                parsed.refuse(
                    decorator,
                    f"backward_of names '{named}', which is not a function defined with "
                    "'def' at the top level of this module",
                )
                continue
            if named in rules:
                parsed.refuse(decorator, f"'{named}' has two backwards given with backward_of")
                continue
            rule = _read_rule(parsed, forward, backward)
            if rule is not None:
                rules[named] = rule
    return rules


def is_rule_decorator(decorator: cst.Decorator, context: ModuleContext) -> bool:
    """Is ``decorator`` ``@gradgen.backward_of(...)`` (in any spelling of the import)?"""
    return _rule_target(decorator, context) is not None


def _is_rule_decorator_node(decorator: cst.Decorator) -> bool:
    target = decorator.decorator
    if not isinstance(target, cst.Call):
        return False
    dotted = dotted_name(target.func) or ""
    return dotted.rpartition(".")[2] == _DECORATOR


def _rule_target(decorator: cst.Decorator, context: ModuleContext) -> str | cst.CSTNode | None:
    """The forward's name a ``backward_of`` decorator gives (the node, when it is not a
    plain name); None for any other decorator."""
    target = decorator.decorator
    if not isinstance(target, cst.Call):
        return None
    dotted = dotted_name(target.func) or ""
    head, _, attr = dotted.partition(".")
    binding = context.imports.get(head)
    if binding is None or binding.module.split(".")[0] != "gradgen":
        return None
    if _DECORATOR not in (binding.attr, attr):
        return None
    if len(target.args) != 1 or target.args[0].keyword is not None:
        return target
    value = target.args[0].value
    return value.value if isinstance(value, cst.Name) else value


def _read_rule(
    parsed: ParsedModule, forward: cst.FunctionDef, backward: cst.FunctionDef
) -> UserRule | None:
    name = forward.name.value
    parameters = read_parameters(parsed, forward)
    results = _result_count(forward)
    if results is None:
        parsed.refuse(
            forward.name,
            f"'{name}' has a backward given with backward_of, so it must end with a "
            "'return' of its value (or values)",
        )
        return None
    wanted = [p.name for p in parameters]
    given = [p.name.value for p in backward.params.params]
    params = backward.params
    starred = isinstance(params.star_arg, cst.Param) or params.star_kwarg is not None
    extra = starred or bool(params.kwonly_params) or bool(params.posonly_params)
    upstreams = given[len(wanted) :]
    if given[: len(wanted)] != wanted or len(upstreams) != results or extra:
        example = ", ".join([*wanted, *(_upstream_names(name, results))])
        parsed.refuse(
            backward.name,
            f"the backward of '{name}' must take {name}'s parameters, then one upstream "
            f"gradient per value it returns: def {backward.name.value}({example})",
        )
        return None
    problem = _outside_name(parsed, forward, backward)
    if problem is not None:
        node, message = problem
        parsed.refuse(node, message)
        return None
    return UserRule(
        forward=name,
        backward=backward.name.value,
        parameters=tuple(parameters),
        results=results,
        shape=_returned_shape(forward) if results == 1 else None,
        no_gradient=frozenset(_returned_none(backward, wanted)),
        forward_node=forward,
        backward_node=backward,
        used_globals=frozenset(_used_globals(parsed.context, forward, backward)),
    )


def _returned_shape(function: cst.FunctionDef) -> Shape | None:
    """``-> float`` (a number) or ``-> "N, C"``: what the forward says it returns."""
    return annotated_shape(function.returns)


def _upstream_names(name: str, results: int) -> list[str]:
    return ["dout"] if results == 1 else [f"dout{k + 1}" for k in range(results)]


def _last_return(function: cst.FunctionDef) -> cst.Return | None:
    body = function.body
    if not isinstance(body, cst.IndentedBlock) or not body.body:
        return None
    last = body.body[-1]
    if isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[-1], cst.Return):
        return last.body[-1]
    return None


def _result_count(function: cst.FunctionDef) -> int | None:
    returned = _last_return(function)
    if returned is None or returned.value is None:
        return None
    if isinstance(returned.value, cst.Tuple):
        return len(returned.value.elements)
    return 1


def _returned_none(backward: cst.FunctionDef, parameters: list[str]) -> list[str]:
    """The parameters whose gradient the backward's last ``return`` writes as ``None``."""
    returned = _last_return(backward)
    if returned is None or returned.value is None:
        return []
    values = (
        [e.value for e in returned.value.elements]
        if isinstance(returned.value, cst.Tuple) and len(parameters) > 1
        else [returned.value]
    )
    return [
        parameter
        for parameter, value in zip(parameters, values, strict=False)
        if isinstance(value, cst.Name) and value.value == "None"
    ]


class _Names(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: list[cst.Name] = []

    def visit_Name(self, node: cst.Name) -> None:
        self.found.append(node)


def _names(*nodes: cst.CSTNode) -> list[cst.Name]:
    visitor = _Names()
    for node in nodes:
        node.visit(visitor)
    return visitor.found


def _used_globals(
    context: ModuleContext, forward: cst.FunctionDef, backward: cst.FunctionDef
) -> set[str]:
    names = {n.value for n in _names(forward.body, backward.body)}
    names |= {
        n.value
        for node in (forward, backward)
        for p in node.params.params
        if p.default
        for n in _names(p.default)
    }
    return {n for n in names if n in context.imports or n in context.constants}


def _outside_name(
    parsed: ParsedModule, forward: cst.FunctionDef, backward: cst.FunctionDef
) -> tuple[cst.CSTNode, str] | None:
    """A module name the rule's functions use that a copy of them could not: another
    function of the module, or a value the module computes."""
    own = {forward.name.value, backward.name.value}
    others = (parsed.function_names | parsed.context.other_names) - own
    local = {p.name.value for node in (forward, backward) for p in node.params.params}
    for node in _names(forward.body, backward.body):
        if node.value in others and node.value not in local:
            return node, (
                f"'{node.value}' is defined in the module, but a rule's functions are copied "
                "into the generated module with its imports and constants only: "
                f"write '{node.value}' out in the rule"
            )
    return None
