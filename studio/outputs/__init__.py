"""Where generated frames + audio go besides the preview: recorder now, virtual camera later."""
