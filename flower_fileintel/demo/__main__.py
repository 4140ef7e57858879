"""``python -m flower_fileintel.demo [options]``: run the demo."""

from flower_fileintel.demo import demo

if __name__ == "__main__":
    demo(prog_name="python -m flower_fileintel.demo")
