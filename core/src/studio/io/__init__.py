"""Writing images, image grids and videos."""
