"""Contact sheets of misreads, to be read by eye: images side by side over a caption."""

from PIL import Image, ImageDraw

CELL = 84
COLUMNS = 6


def on_white(image: Image.Image) -> Image.Image:
    """A canvas as a person sees it: transparent paper shown white."""
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
    paper.alpha_composite(image.convert("RGBA"))
    return paper.convert("L")


def sheet(entries: list[tuple[list[Image.Image], str]], columns: int = COLUMNS) -> Image.Image:
    """Each entry's images in a row of cells, its caption below; ``columns`` entries a row."""
    width = max((len(images) for images, _ in entries), default=1)
    rows = max(1, -(-len(entries) // columns))
    page = Image.new("L", (columns * width * CELL, rows * (CELL + 14)), 160)
    pen = ImageDraw.Draw(page)
    for index, (images, caption) in enumerate(entries):
        left, top = (index % columns) * width * CELL, (index // columns) * (CELL + 14)
        for offset, image in enumerate(images):
            page.paste(image.convert("L").resize((CELL, CELL)), (left + offset * CELL, top))
        pen.text((left + 2, top + CELL), f"{index}: {caption}", fill=0)
    return page
