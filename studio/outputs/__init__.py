"""Where generated frames + audio go besides the preview: recorder and virtual camera."""
