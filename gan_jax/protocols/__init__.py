"""Protocol drivers: multi-stage studies that read their config at the top and hand arrays to the trainers."""
