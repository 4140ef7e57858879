"""``python -m fileintel_demo [options]``: run the demo."""

from fileintel_demo import demo

if __name__ == "__main__":
    demo(prog_name="python -m fileintel_demo")
