"""Word sets for the failure-mode probes: polysemous words, compound nouns and typography words.

Each sense or compound names the dataset classes whose images show it, most specific first
(ImageNet, then CIFAR-100, then CIFAR-10 names), so one set serves all three; the probe uses the
first class present in the dataset and skips what it cannot show.
"""

from __future__ import annotations

from dataclasses import dataclass

from cliplens.core.errors import InvalidInputError

# Words whose text embeddings point at visual text; latents aligned with them are "text-like".
TYPOGRAPHY_WORDS: tuple[str, ...] = ("text", "letters", "a sign", "writing", "words", "a word", "a label")

PROMPT_TEMPLATE = "a photo of a {}."


@dataclass(frozen=True)
class Sense:
    """One meaning of a word: a disambiguating gloss and the classes whose images show it."""

    gloss: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolysemousWord:
    word: str
    senses: tuple[Sense, ...]

    def __post_init__(self) -> None:
        if len(self.senses) < 2:
            raise InvalidInputError(f"polysemous word '{self.word}' needs at least 2 senses")


@dataclass(frozen=True)
class CompoundNoun:
    """A compound, its parts, the classes its probe images come from and whether it names them
    (``denotes``: a sea horse is not a horse, so horse images should prefer "horse")."""

    compound: str
    parts: tuple[str, ...]
    classes: tuple[str, ...]
    denotes: bool = True


CAR = ("sports car", "convertible", "car", "automobile")
POLYSEMOUS_WORDS: tuple[PolysemousWord, ...] = (
    PolysemousWord(
        "jaguar", (Sense("jaguar, the big cat", ("jaguar", "leopard", "cat")), Sense("Jaguar, the car", CAR))
    ),
    PolysemousWord(
        "kite",
        (
            Sense("kite, the bird of prey", ("kite (bird of prey)", "bird")),
            Sense("kite, the toy flown on a string"),
        ),
    ),
    PolysemousWord(
        "bat", (Sense("bat, the flying animal", ("bat",)), Sense("bat, the baseball bat", ("baseball bat",)))
    ),
    PolysemousWord(
        "crane",
        (
            Sense("crane, the wading bird", ("crane bird", "bird")),
            Sense("crane, the lifting machine", ("construction crane",)),
        ),
    ),
    PolysemousWord(
        "mouse",
        (
            Sense("mouse, the rodent", ("mouse", "hamster")),
            Sense("mouse, the computer device", ("computer mouse",)),
        ),
    ),
    PolysemousWord(
        "mustang",
        (Sense("mustang, the wild horse", ("common sorrel horse", "horse")), Sense("Mustang, the car", CAR)),
    ),
    PolysemousWord(
        "tanker",
        (
            Sense("tanker, the ship", ("container ship", "ship")),
            Sense("tanker, the truck", ("semi-trailer truck", "truck")),
        ),
    ),
    PolysemousWord(
        "beetle",
        (
            Sense("beetle, the insect", ("leaf beetle", "ground beetle", "beetle")),
            Sense("Beetle, the Volkswagen car", CAR),
        ),
    ),
    PolysemousWord(
        "boxer", (Sense("boxer, the dog breed", ("Boxer", "dog")), Sense("boxer, the athlete who boxes"))
    ),
    PolysemousWord("seal", (Sense("seal, the marine mammal", ("seal",)), Sense("seal, the wax stamp"))),
)

COMPOUND_NOUNS: tuple[CompoundNoun, ...] = (
    CompoundNoun("cabbage butterfly", ("cabbage", "butterfly"), ("small white butterfly", "butterfly")),
    CompoundNoun("Egyptian cat", ("Egyptian", "cat"), ("Egyptian Mau", "tabby cat", "cat")),
    CompoundNoun("fire truck", ("fire", "truck"), ("fire truck", "pickup truck", "truck")),
    CompoundNoun("sports car", ("sports", "car"), ("sports car", "automobile")),
    CompoundNoun("container ship", ("container", "ship"), ("container ship", "ship")),
    CompoundNoun("tree frog", ("tree", "frog"), ("tree frog", "frog")),
    CompoundNoun("sheepdog", ("sheep", "dog"), ("Shetland Sheepdog", "dog")),
    CompoundNoun("sea horse", ("sea", "horse"), ("common sorrel horse", "horse"), denotes=False),
    CompoundNoun("catfish", ("cat", "fish"), ("tabby cat", "cat"), denotes=False),
    CompoundNoun("hot dog", ("hot", "dog"), ("golden retriever", "dog"), denotes=False),
    CompoundNoun("ladybird", ("lady", "bird"), ("bird",), denotes=False),
    CompoundNoun("paper airplane", ("paper", "airplane"), ("airliner", "airplane"), denotes=False),
)
