"""ComfyUI node classes of the pack (thin declarations; the work lives in the core libraries)."""
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
