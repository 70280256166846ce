"""English stop words: function words an attack must not edit when ``keep_stopwords`` is set.

Typed here (pronouns, determiners, auxiliaries, prepositions, conjunctions and their contractions, the
classes NLTK's and TextAttack's English lists cover) rather than downloaded, so the list is the same on
every machine. Negations ("not", "no", "never", "n't") are included on purpose: flipping them changes the
meaning, which is exactly what a constraint must forbid.
"""

from __future__ import annotations

__all__ = ["STOPWORDS"]

STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against ain all am an and any are aren aren't as at be because been before
    being below between both but by can can't cannot could couldn couldn't d did didn didn't do does doesn
    doesn't doing don don't down during each few for from further had hadn hadn't has hasn hasn't have
    haven haven't having he he'd he'll he's her here here's hers herself him himself his how how's i i'd
    i'll i'm i've if in into is isn isn't it it's its itself just let's ll m ma me might mightn mightn't
    more most must mustn mustn't my myself n't needn needn't never no nor not now o of off on once only or
    other ought our ours ourselves out over own re s same shall shan shan't she she'd she'll she's should
    should've shouldn shouldn't so some such t than that that'll that's the their theirs them themselves
    then there there's these they they'd they'll they're they've this those through to too under until up
    us ve very was wasn wasn't we we'd we'll we're we've were weren weren't what what's when when's where
    where's which while who who's whom why why's will with won won't would wouldn wouldn't y you you'd
    you'll you're you've your yours yourself yourselves
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
