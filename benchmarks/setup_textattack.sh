#!/usr/bin/env bash
# Creates benchmarks/.textattack-venv: bastion (with its text extra) and TextAttack 0.3.11 side by side,
# plus the NLTK data TextAttack reads, built offline from Debian's WordNet. Used by
#   benchmarks/.textattack-venv/bin/python benchmarks/bench_text.py --textattack
#
# Why not `pip install textattack`: its resolver backtracks into an old sentencepiece sdist whose build
# clones from GitHub (no network here). So TextAttack and its heaviest pins go in with --no-deps, the
# rest of its requirements explicitly; datasets < 4 (datasets 4+ with huggingface-hub 0.36 fails to
# import), transformers < 5. Nothing is downloaded at run time: the benchmark runs TextAttack offline.
#
# NLTK data (TextAttack needs WordNet for PWWS and imports NLTK's stop words at import time):
#   corpora/wordnet: copies (NLTK refuses symlinks that leave its data root) of Debian's WordNet 3.0
#     (/usr/share/wordnet, packages wordnet-base + wordnet-sense-index for index.sense) and a `lexnames`
#     table written from bastion.text.lexicon.wordnet (Debian does not ship that file);
#   corpora/stopwords/english: bastion's stop-word list (bastion.text.stopwords).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.textattack-venv
PY=${PYTHON:-python3}
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet)
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e '.[text]'
"${PIP[@]}" --no-deps textattack==0.3.11 flair==0.15.1 transformer-smaller-training-vocab OpenHowNet anytree
"${PIP[@]}" --only-binary :all: sentencepiece
"${PIP[@]}" nltk "transformers<5" "datasets<4" lemminflect lru-dict terminaltables word2number num2words \
  more-itertools Levenshtein editdistance language_tool_python pandas scipy tqdm filelock scikit-learn boto3 \
  "conllu<5" deprecated ftfy gdown langdetect lxml matplotlib mpld3 pptree pytorch-revgrad segtok sqlitedict \
  tabulate wikipedia-api "bioc<3" bert-score jieba pinyin

# --- NLTK data, offline -----------------------------------------------------------------------------
WN=/usr/share/wordnet
if [ ! -f "$WN/index.sense" ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index
  else sudo apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index; fi
fi
DATA="$VENV/nltk_data"
mkdir -p "$DATA/corpora/wordnet" "$DATA/corpora/stopwords"
cp -f "$WN"/index.{noun,verb,adj,adv,sense} "$WN"/data.{noun,verb,adj,adv} "$WN"/*.exc "$WN"/cntlist.rev \
  "$DATA/corpora/wordnet/"
"$VENV/bin/python" - "$DATA" <<'EOF'
import sys
from pathlib import Path

from bastion.text.lexicon.wordnet import _CATEGORY, _LEXNAMES  # the lexnames(5WN) table
from bastion.text.stopwords import STOPWORDS

root = Path(sys.argv[1]) / "corpora"
lex = "".join(f"{i:02d}\t{n}\t{_CATEGORY[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES))
(root / "wordnet" / "lexnames").write_text(lex, encoding="utf-8")
(root / "stopwords" / "english").write_text("\n".join(sorted(STOPWORDS)) + "\n", encoding="utf-8")
EOF

# --- check: TextAttack imports and reads WordNet offline ---------------------------------------------
NLTK_DATA="$PWD/$DATA" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  "$VENV/bin/python" -c "
import warnings; warnings.simplefilter('ignore')
import textattack, bastion.text
from nltk.corpus import wordnet as wn
syn = sorted({l.name() for s in wn.synsets('movie') for l in s.lemmas()})
print('textattack ready; WordNet', wn.get_version(), 'synonyms of movie:', ', '.join(syn[:5]))
" 2>&1 | grep -v 'nltk_data\|Errno\|Resource\|download' | tail -3
echo "done: run the side-by-side with $VENV/bin/python benchmarks/bench_text.py --textattack"
