"""Draw a thumbnail ``<name>.jpg`` beside every ``workflows/<name>.json`` (ComfyUI's Templates browser shows it).

Run from the repository root: ``python tools/render_thumbnails.py`` (needs Pillow). The picture is drawn from the
workflow file itself — groups, nodes with their titles, links coloured by type, the room kept for previews — so it
needs no browser and comes out the same on every machine. Each JPEG carries the SHA-256 of the JSON it was drawn from
in its comment; a test checks that every thumbnail matches its workflow, so re-run this after changing one.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "workflows"
SIZE = (768, 512)
HEADER = 56
MARGIN = 14
TITLE_HEIGHT = 30  # the frontend draws a node's title bar above its position
BACKGROUND = (30, 30, 30)
NODE_BODY, NODE_TITLE, WIDGET = (53, 53, 53), (40, 40, 40), (34, 34, 34)
LINK_COLOURS = {"IMAGE": (100, 181, 246), "MASK": (129, 200, 132), "VIDEO": (255, 183, 77), "FLOAT": (170, 238, 136),
                "INT": (170, 238, 136)}
OTHER_LINK = (200, 200, 200)
# Nodes that show a picture or video: their kept room is drawn as a preview frame.
PREVIEW_NODES = {"GenOmnimatteCasperRemove", "GenOmnimatteFitLayers", "GenOmnimatteUpscaleLayers",
                 "GenOmnimatteSaveLayers", "PreviewImage", "SaveImage", "SaveVideo", "LoadImage", "LoadVideo"}
PREVIEW_ROOM = 256
TITLES = {
    "a_full_decomposition_casper": "Full decomposition with Casper",
    "b_weight_free_locked_off": "Weight-free layers of a locked-off shot",
    "c_remove_one_object": "Remove one object and its effects",
    "d_full_resolution_bootstrapped": "Full-resolution layers (bootstrapped)",
    "e_recomposite_new_background": "Recomposite over a new background",
}
# Display names of the core nodes the workflows use (ours come from the pack).
CORE_NAMES = {"LoadVideo": "Load Video", "GetVideoComponents": "Get Video Components", "ImageToMask": "Convert "
              "Image to Mask", "CreateVideo": "Create Video", "SaveVideo": "Save Video", "PreviewImage": "Preview "
              "Image", "SaveImage": "Save Image", "LoadImage": "Load Image", "ImageScale": "Upscale Image"}


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _font(size: int):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    return ImageFont.load_default(size)


def _display_names() -> dict:
    # the sibling script, loaded from its file: sys.path stays as it is
    spec = importlib.util.spec_from_file_location("build_workflows", ROOT / "tools" / "build_workflows.py")
    build_workflows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_workflows)
    return dict(build_workflows.load_pack().NODE_DISPLAY_NAME_MAPPINGS)


def _blend(colour: tuple, amount: float) -> tuple:
    return tuple(int(BACKGROUND[i] + (colour[i] - BACKGROUND[i]) * amount) for i in range(3))


def _hex(colour: str) -> tuple:
    colour = colour.lstrip("#")
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    return tuple(int(colour[i : i + 2], 16) for i in (0, 2, 4))


def render(workflow: dict, title: str, names: dict) -> Image.Image:
    image = Image.new("RGB", SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 14), title, fill=(235, 235, 235), font=_font(24))
    nodes = workflow["nodes"]
    boxes = [(n["pos"][0], n["pos"][1] - TITLE_HEIGHT, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in nodes]
    boxes += [(g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
               g["bounding"][1] + g["bounding"][3]) for g in workflow.get("groups", [])]
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
    scale = min((SIZE[0] - 2 * MARGIN) / (right - left), (SIZE[1] - HEADER - MARGIN) / (bottom - top))
    offset_x = (SIZE[0] - (right - left) * scale) / 2 - left * scale
    offset_y = HEADER - top * scale

    def at(x, y):
        return offset_x + x * scale, offset_y + y * scale

    for group in workflow.get("groups", []):
        x, y, w, h = group["bounding"]
        colour = _hex(group.get("color", "#3f789e"))
        draw.rectangle([*at(x, y), *at(x + w, y + h)], fill=_blend(colour, 0.35), outline=_blend(colour, 0.8))
        draw.text(at(x + 8, y + 6), group["title"], fill=_blend(colour, 1.4), font=_font(max(9, int(26 * scale))))
    by_id = {n["id"]: n for n in nodes}
    for _, origin, origin_slot, target, target_slot, type_ in workflow["links"]:
        source, sink = by_id[origin], by_id[target]
        x0, y0 = at(source["pos"][0] + source["size"][0], source["pos"][1] + 14 + 20 * origin_slot)
        x1, y1 = at(sink["pos"][0], sink["pos"][1] + 14 + 20 * target_slot)
        bend = max(20.0, abs(x1 - x0) / 2)
        points = []
        for i in range(25):
            t = i / 24
            u = 1 - t
            points.append((u ** 3 * x0 + 3 * u * u * t * (x0 + bend) + 3 * u * t * t * (x1 - bend) + t ** 3 * x1,
                           u ** 3 * y0 + 3 * u * u * t * y0 + 3 * u * t * t * y1 + t ** 3 * y1))
        draw.line(points, fill=LINK_COLOURS.get(type_, OTHER_LINK), width=2)
    title_font = _font(max(9, int(24 * scale)))
    for node in nodes:
        x, y = node["pos"]
        w, h = node["size"]
        draw.rounded_rectangle([*at(x, y - TITLE_HEIGHT), *at(x + w, y + h)], radius=4, fill=NODE_BODY,
                               outline=(20, 20, 20))
        draw.rounded_rectangle([*at(x, y - TITLE_HEIGHT), *at(x + w, y)], radius=4, fill=NODE_TITLE)
        label = node.get("title") or names.get(node["type"]) or CORE_NAMES.get(node["type"], node["type"])
        chars = max(8, int(w * scale / (title_font.size * 0.55)))
        lines = textwrap.wrap(label, chars)[:2]
        for i, line in enumerate(lines):
            draw.text(at(x + 8, y - TITLE_HEIGHT + 4 + i * title_font.size / scale), line, fill=(230, 230, 230),
                      font=title_font)
        preview = PREVIEW_ROOM if node["type"] in PREVIEW_NODES and h > PREVIEW_ROOM else 0
        rows = len([v for v in node.get("widgets_values") or [] if not isinstance(v, (dict, list))])
        slots = max(len([s for s in node.get("inputs", []) if "widget" not in s]), len(node.get("outputs", [])))
        row_y = y + 10 + 20 * slots
        for _ in range(rows):
            if row_y + 18 > y + h - preview:
                break
            draw.rectangle([*at(x + 12, row_y), *at(x + w - 12, row_y + 16)], fill=WIDGET)
            row_y += 24
        if preview:
            frame = [*at(x + 24, y + h - preview + 12), *at(x + w - 24, y + h - 14)]
            draw.rectangle(frame, fill=(70, 82, 96), outline=(120, 140, 160))
            fx0, fy0, fx1, fy1 = frame
            draw.polygon([(fx0 + 4, fy1 - 3), ((fx0 + fx1) / 2 - 4, fy0 + (fy1 - fy0) * 0.45),
                          ((fx0 + fx1) / 2 + 8, fy1 - 3)], fill=(110, 150, 120))
    return image


def main() -> None:
    names = _display_names()
    for path in sorted(FOLDER.glob("*.json")):
        image = render(json.loads(path.read_text()), TITLES.get(path.stem, path.stem), names)
        target = path.with_suffix(".jpg")
        image.save(target, "JPEG", quality=88, optimize=True, comment=f"source-sha256:{source_hash(path)}")
        print(target.relative_to(ROOT), image.size)


if __name__ == "__main__":
    main()
