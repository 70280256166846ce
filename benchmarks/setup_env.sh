#!/usr/bin/env bash
# Creates benchmarks/.bench-venv: bastion plus the peer libraries, side by side in one environment.
# torchattacks and CleverHans go in with --no-deps (their requirements would pull another torch build,
# and CleverHans' PyTorch attacks need only torch and numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.bench-venv
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet torch==2.13.0
"$VENV/bin/pip" install --quiet -e .
"$VENV/bin/pip" install --quiet adversarial-robustness-toolbox foolbox packaging statsmodels  # ART smoothing needs statsmodels
"$VENV/bin/pip" install --quiet --no-deps torchattacks cleverhans==4.0.0
"$VENV/bin/python" -c "import torchattacks, foolbox, art, cleverhans.torch.attacks.carlini_wagner_l2; print('peers ready:', torchattacks.__version__, foolbox.__version__, art.__version__, 'cleverhans 4.0.0')"
