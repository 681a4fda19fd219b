"""Browser tests (headless Chromium) and the small scenes the viewer tests share."""
