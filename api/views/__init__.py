"""What the web view shows, shaped by pure functions: plot figures (Plotly JSON), downsampled
trial sets, the bias/variance panel. No I/O here; routes/web.py loads and these shape."""
