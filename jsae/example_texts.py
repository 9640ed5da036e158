"""Default prompts: short texts of different kinds, written for this project.

Each is about 40 to 150 tokens for the bundled model's tokenizer (and for GPT-2's), so an
ablation of every token stays quick on a laptop.
"""

from __future__ import annotations

DEFAULT_PROMPTS: dict[str, str] = {
    "Prose": (
        "A sparse autoencoder rewrites each activation as a short sum of directions, and "
        "most of its features stay silent on any given token. If the MLP between two such "
        "dictionaries were sparse as well, then each output feature would listen to only "
        "a few input features, and switching one of them off would leave the others "
        "almost untouched."
    ),
    "Code": (
        "def moving_average(values, window=3):\n"
        '    """Return the mean of each run of `window` consecutive values."""\n'
        "    if window <= 0:\n"
        '        raise ValueError("window must be positive")\n'
        "    total = sum(values[:window])\n"
        "    averages = [total / window]\n"
        "    for i in range(window, len(values)):\n"
        "        total += values[i] - values[i - window]\n"
        "        averages.append(total / window)\n"
        "    return averages\n"
    ),
    "List": (
        "Things to pack for the field trip:\n"
        "- a notebook and two pencils\n"
        "- a water bottle (filled the night before)\n"
        "- sandwiches, an apple and some crackers\n"
        "- a warm jumper, in case it rains\n"
        "- the signed permission form\n"
        "- a small torch with spare batteries\n"
    ),
    "Dialogue": (
        "Maya: Did you move the plant away from the window?\n"
        "Tom: Only a little. The leaves were turning yellow.\n"
        "Maya: That usually means too much water, not too much sun.\n"
        "Tom: So I should water it less and put it back?\n"
        "Maya: Yes, and wait until the soil feels dry before the next watering.\n"
        "Tom: Fine. I'll leave a note on the fridge so we don't both water it.\n"
    ),
    "Documentation": (
        "Return a new sorted list from the items in the iterable. The optional key "
        "argument specifies a function of one argument that is used to extract a "
        "comparison key from each element. If reverse is true, the list is sorted as if "
        "each comparison were reversed. The sort is stable: equal elements keep their "
        "original order."
    ),
}
