"""Views of a decoded capture: rich tables, the side-by-side ORM view, JSON lines."""
