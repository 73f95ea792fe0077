import os

# Tests never autoload third-party plugins that happen to be installed.
os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")

import torch  # noqa: E402

# The test machine is shared: with more intra-op threads than free cores, OpenMP spin-waiting
# makes small CPU convolutions up to 100x slower. One thread keeps the suite fast and stable.
torch.set_num_threads(1)
