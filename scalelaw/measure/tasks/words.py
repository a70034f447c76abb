"""Word lists for the generated tasks.

All lists are our own and fixed: changing one changes every generated sample, so treat them as
part of the task definition (a task's `version` is bumped when they change).
"""

from __future__ import annotations

ADJECTIVES: tuple[str, ...] = (
    "quiet", "narrow", "golden", "wooden", "distant", "gentle", "broken", "ancient", "bright",
    "heavy", "simple", "crowded", "empty", "hidden", "shallow", "steep", "dusty", "fragrant",
    "patient", "careful", "sturdy", "faded", "hollow", "frozen", "tidy", "rusty", "silver",
    "muddy", "lively", "humble", "weathered", "spacious", "modest", "curious", "restless",
)

NOUNS: tuple[str, ...] = (
    "river", "market", "bridge", "window", "garden", "lantern", "harbor", "meadow", "village",
    "orchard", "workshop", "cottage", "library", "hillside", "fountain", "courtyard", "stable",
    "bakery", "tower", "valley", "forest", "path", "roof", "wagon", "boat", "mill", "field",
    "chapel", "square", "kitchen", "barn", "well", "fence", "gate", "pond", "road",
)

VERBS: tuple[str, ...] = (
    "rested near", "stood beside", "leaned against", "faced", "overlooked", "waited by",
    "circled", "sheltered", "bordered", "followed", "crossed", "touched", "framed", "guarded",
)

WEATHER: tuple[str, ...] = (
    "The morning air was cool and still.",
    "A light rain fell for a while and then stopped.",
    "Clouds drifted slowly toward the east.",
    "The sun stayed low over the hills all afternoon.",
    "A steady wind carried the smell of bread.",
    "Birds called to each other from the trees.",
    "The evening light turned the walls a warm color.",
    "Somewhere a dog barked twice and fell silent.",
)

# Keys for needle retrieval: two words joined, so a key is never a single common token.
KEY_FIRST: tuple[str, ...] = (
    "amber", "cobalt", "crimson", "ivory", "jade", "scarlet", "violet", "olive", "copper",
    "indigo", "maroon", "teal", "coral", "bronze", "azure", "ochre", "plum", "saffron",
)
KEY_SECOND: tuple[str, ...] = (
    "falcon", "otter", "badger", "heron", "lynx", "marten", "raven", "salmon", "tortoise",
    "walrus", "beetle", "gecko", "ibis", "jackal", "koala", "lemur", "newt", "osprey",
)

# Candidate words for common-word extraction: plain, distinct, one or two tokens each.
COMMON_POOL: tuple[str, ...] = (
    "apple", "button", "candle", "desk", "engine", "feather", "glove", "hammer", "island",
    "jacket", "kettle", "ladder", "magnet", "needle", "onion", "pencil", "quilt", "ribbon",
    "saddle", "ticket", "umbrella", "violin", "wallet", "yarn", "zipper", "anchor", "basket",
    "cabbage", "drum", "envelope", "funnel", "guitar", "helmet", "insect", "jelly", "kite",
    "lemon", "mirror", "napkin", "oven", "pillow", "rocket", "scarf", "tomato", "vase",
    "whistle", "bottle", "carpet", "dolphin", "eraser", "fork", "grape", "honey", "iron",
    "juice", "key", "lamp", "mask", "nest", "olive", "pepper", "rabbit", "sock", "tiger",
    "cloud", "spoon", "brick", "chain", "coin", "crown", "dice", "flag", "globe", "horn",
    "jar", "knot", "leaf", "map", "nail", "pearl", "ring", "shell", "stamp", "wheel",
)

PEOPLE: tuple[str, ...] = (
    "Mara", "Tobin", "Elsa", "Corin", "Nadia", "Oskar", "Lena", "Pavel", "Ines", "Rufus",
)

PLACES: tuple[str, ...] = (
    "the salt harbor", "the copper mine", "the old mill", "the river ford", "the stone abbey",
    "the pine ridge", "the flower market", "the lighthouse", "the north gate", "the quarry",
    "the fishing village", "the clock tower", "the orchard farm", "the mountain pass",
    "the royal library", "the glass workshop", "the sheep meadow", "the ferry landing",
    "the hot springs", "the cedar grove", "the iron bridge", "the desert camp",
    "the tea house", "the shipyard", "the silk bazaar", "the watch post", "the marsh inn",
    "the chalk cliffs", "the herb garden", "the bell foundry", "the winter fort",
    "the lantern street", "the horse fair", "the paper mill", "the amber coast",
)

ITEMS: tuple[str, ...] = (
    "a brass compass", "a wool blanket", "a clay pitcher", "a silver whistle", "a leather map",
    "a glass lantern", "a wooden flute", "a copper kettle", "a linen scarf", "a bone comb",
    "an iron key", "a jade ring", "a straw hat", "a tin cup", "a velvet pouch", "a cedar box",
    "a stone amulet", "a feather quill", "a honey jar", "a rope ladder", "a spice tin",
    "a painted mask", "a hunting knife", "a music box", "a pocket mirror", "a wax candle",
)

ACTIVITIES: tuple[str, ...] = (
    "repaired a broken cart", "helped a farmer carry grain", "watched a puppet show",
    "copied an old letter", "mended a torn sail", "fed the stray cats", "sang at a wedding",
    "counted coins for a merchant", "swam in the cold water", "climbed the highest wall",
    "painted a small sign", "cooked soup for travelers", "read aloud to children",
    "planted three young trees", "traded stories with a sailor", "cleaned an old bell",
)
