"""The human-readable report of a fuse run (the JSON one is ``FuseResult.to_dict()``)."""

from __future__ import annotations


def format_report(result) -> list[str]:
    """Lines for stdout: what each rule did, LN nodes, op histogram changes, what was left and why."""
    data = result.to_dict()
    lines = ["rules: " + ", ".join(f"{name} {count}" for name, count in data["rules"].items())]
    ln = data["ln_nodes"]
    lines.append(f"normalization nodes: {ln['before']} -> {ln['after']}")
    lines.append("ops (before -> after):")
    lines.extend(_histogram_lines(data["ops_before"], data["ops_after"]))
    for note in data["notes"]:
        lines.append(f"note: {note}")
    for left in data["unconverted"]:
        lines.append(f"left unconverted: {left['node']} ({left['rule']}): {left['reason']}")
    verification = data["verification"]
    if verification and verification.get("unchanged"):
        lines.append("nothing changed: the model is written back as it was (not run on ONNX Runtime)")
    elif verification:
        from lndeploy.passes.fuse._verify import describe_tolerance

        tolerance = describe_tolerance(verification["tolerance"])
        for sample in verification["samples"]:
            where = ", ".join(f"{k}={v}" for k, v in sample["sizes"].items()) or "static shapes"
            worst = max(sample["max_abs"].values(), default=0.0)
            relative = max(sample["max_rel"].values(), default=0.0)
            lines.append(f"verified with {_backend_label(verification)} at {where}: max abs change {worst:.3g}, "
                         f"max rel {relative:.3g} (tolerance {tolerance})")
    else:
        lines.append("not verified (--no-verify)")
    return lines


def _backend_label(verification: dict) -> str:
    if verification.get("backend") == "onnx-reference":
        return "the ONNX reference evaluator (ONNX Runtime has no CPU kernel for some op types)"
    return "ONNX Runtime"


def _histogram_lines(before: dict, after: dict) -> list[str]:
    ops = list(dict.fromkeys([*before, *after]))
    changed = [op for op in ops if before.get(op, 0) != after.get(op, 0)]
    same = len(ops) - len(changed)
    width = max((len(op) for op in changed), default=0)
    lines = [f"  {op:<{width}}  {before.get(op, 0):>5} -> {after.get(op, 0)}" for op in changed]
    if same:
        lines.append(f"  ({same} other op types unchanged)")
    return lines
