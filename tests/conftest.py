import os

os.environ.setdefault("KILN_CHECK", "1")
