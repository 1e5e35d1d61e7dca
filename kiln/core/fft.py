"""mx.fft (filled in by its issue)."""
