"""The sections of the optional passes: the hi-res pass, LoRAs and wildcards (the levels of
their sweep axes are checked by the axes table)."""

from __future__ import annotations

from pathlib import Path

from . import loras
from .axes import AXES
from .collect import Collector, check_int, number_in
from .job import HiresSpec, LoraSpec, SweepSpec, WildcardSpec
from .values import HIRES_SCALE, UPSCALERS, hires_side, is_off


def parse_hires(c: Collector, raw) -> HiresSpec:
    spec = c.section(raw, "hires", HiresSpec)
    scale = None if is_off(spec.scale) else spec.scale
    if scale is not None:
        AXES["hires.scale"].check(c, "hires.scale", scale, None)
    AXES["hires.strength"].check(c, "hires.strength", spec.strength, None)
    if spec.upscaler not in UPSCALERS:
        c.add("hires.upscaler", f"{spec.upscaler!r} is not one of {', '.join(UPSCALERS)}")
    return HiresSpec(scale=float(scale) if number_in(scale, *HIRES_SCALE) else None,
                     strength=float(spec.strength) if number_in(spec.strength, 0, 1)
                     else HiresSpec.strength,
                     upscaler=spec.upscaler)


def parse_loras(c: Collector, raw) -> tuple[LoraSpec, ...]:
    if raw in (None, "none"):
        return ()
    if not isinstance(raw, (list, tuple)):
        c.add("loras", "must be a list of {path, scale}")
        return ()
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or "path" not in item:
            c.add(f"loras[{i}]", "must be a mapping with path (a .safetensors file) and scale")
            continue
        lora = c.section(item, f"loras[{i}]", LoraSpec, LoraSpec(path=str(item["path"])))
        problem = loras.check(str(lora.path))
        if problem:
            c.add(f"loras[{i}].path", problem)
        AXES["lora.scale"].check(c, f"loras[{i}].scale", lora.scale, None)
        out.append(LoraSpec(path=str(lora.path), scale=float(lora.scale)
                            if number_in(lora.scale, -10, 10) else 1.0))
    return tuple(out)


def parse_wildcards(c: Collector, raw, prompt_dirs: list[Path]) -> WildcardSpec:
    """A relative folder that is not found from the working directory is looked up among the
    packaged wildcard folders (conf/wildcards/<folder>)."""
    spec = c.section(raw, "wildcards", WildcardSpec)
    if spec.folder is not None and not isinstance(spec.folder, str):
        c.add("wildcards.folder", f"{spec.folder!r} is not a folder path")
        return WildcardSpec()
    if spec.folder is not None and not Path(spec.folder).expanduser().is_dir():
        for d in prompt_dirs:
            packaged = d.parent / "wildcards" / str(spec.folder)
            if packaged.is_dir():
                spec = WildcardSpec(**{**spec.__dict__, "folder": str(packaged)})
                break
    if spec.mode not in ("combinatorial", "random"):
        c.add("wildcards.mode", f"{spec.mode!r} is not one of combinatorial, random")
    if spec.variants is not None:
        check_int(c, "wildcards.variants", spec.variants, 1)
    if spec.seed is not None:
        check_int(c, "wildcards.seed", spec.seed, 0)
    if spec.folder is not None and not Path(spec.folder).expanduser().is_dir():
        c.add("wildcards.folder", f"{spec.folder} is not a folder (of <name>.txt wildcard files)")
    elif spec.folder is not None:
        from .wildcards import check_folder

        for problem in check_folder(Path(spec.folder).expanduser()):
            c.add("wildcards.folder", problem)
    return spec


def check_hires_fit(c: Collector, sweep: SweepSpec, hires: HiresSpec, steps, sizes: list[int],
                    hi: int, models: list[str]) -> None:
    """The upscaled size must stay within the model's limit, and every steps x strength must
    leave the img2img pass at least one step."""
    def levels(axis: str, default) -> tuple:
        return sweep.levels(axis) if axis in sweep.axes else (default,)

    scales = [v for v in levels("hires.scale", hires.scale)
              if not is_off(v) and number_in(v, *HIRES_SCALE)]
    if not scales:
        return
    if sizes:
        big = max(sizes)
        final = hires_side(big, max(scales))
        if final > hi:
            c.add("hires.scale", f"{max(scales)} upscales {big} px to {final} px, more than "
                  f"{hi} px, the largest size the model(s) {', '.join(models)} accept")
    step_levels = [v for v in levels("steps", steps)
                   if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    strengths = [v for v in levels("hires.strength", hires.strength) if number_in(v, 0.0, 1.0)]
    for st in step_levels:
        for sg in strengths:
            if int(st * sg) < 1:
                c.add("hires.strength", f"{sg} with {st} steps leaves the hi-res pass no "
                      "denoising step (int(steps x strength) must be at least 1)")
