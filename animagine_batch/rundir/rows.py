"""A results row as a task fixes it before it is generated: the contract's head columns and one
column per swept axis (the engine adds the image, its status and the scores)."""

from __future__ import annotations

from ..jobspec import samplers
from ..jobspec.axes import AXES, FIELDS, row_value

COLUMNS_OF = {a.name: a.column for a in AXES.values()}
# axes whose column is written whenever their field is not at its default, swept or not
RECORDED = {a.name: a.fields[0] for a in AXES.values() if a.recorded}


def base_row(task, job: str, model_label: str) -> dict:
    """The columns a task fixes before it is generated."""
    row = {
        "task_id": task.task_id, "job": job, "model": model_label, "model_name": task.model,
        "prompt_key": task.prompt_key, "subject": task.subject, "character": task.character,
        "series": task.series, "prompt": task.prompt, "negative_prompt": task.negative_prompt,
        "content_prompt": task.content_prompt, "sampler": samplers.get(task.sampler).name,
        "steps": task.steps, "cfg": task.cfg, "width": task.width, "height": task.height,
        "seed": task.seed, "weighting": task.weighting,
        "hires_scale": task.hires[0] if task.hires else None,
        "hires_strength": task.hires[1] if task.hires else None,
        "loras": "; ".join(f"{p}:{s:g}" for p, s in task.loras) or None,
    }
    for axis, level in task.axes:
        if COLUMNS_OF[axis] != "head":  # a contract column holds it already
            row[axis] = row_value(axis, level)
    for axis, field in RECORDED.items():
        value = getattr(task, field)
        if axis not in row and value != FIELDS[field].default:
            row[axis] = row_value(axis, value)
    return row
