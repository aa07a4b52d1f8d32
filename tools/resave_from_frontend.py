"""Load each workflow into the real ComfyUI frontend (headless Chromium) and save it back as the canvas serialises it.

Usage, with a ComfyUI server running with the pack installed (any port):

    python tools/resave_from_frontend.py --url http://127.0.0.1:8188 [--chromium /usr/bin/chromium]

Needs the Python package ``playwright`` and a Chromium binary (``--chromium``). Each file in
``workflows/*.json`` is loaded with the frontend's own ``app.loadGraphData`` and replaced by
``JSON.stringify(app.graph.serialize())`` — what the frontend's *Save* writes — so the files carry the frontend's
normalisation (widget sockets, localised names, its version).
"""
import argparse
import json
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the ComfyUI server, e.g. http://127.0.0.1:8188")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(args.url)
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90_000)
        page.wait_for_timeout(2_000)
        for path in sorted(WORKFLOWS.glob("*.json")):
            saved = page.evaluate(
                """async (workflow) => {
                    await window.app.loadGraphData(workflow);
                    await new Promise((done) => setTimeout(done, 500));
                    return JSON.stringify(window.app.graph.serialize());
                }""",
                json.loads(path.read_text()),
            )
            graph = json.loads(saved)
            path.write_text(json.dumps(graph, indent=1) + "\n")
            print(path.name, len(graph["nodes"]), "nodes", len(graph["links"]), "links")
        browser.close()


if __name__ == "__main__":
    main()
