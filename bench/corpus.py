"""A speech corpus with known transcripts, synthesised with espeak-ng (no downloads).

The texts are Aesop's fables in the public-domain translation of George Fyler Townsend (1867),
abridged. Each fable becomes one WAV file at 16 kHz; voices and speaking rates vary so the
corpus is not one monotone.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

FABLES: tuple[str, ...] = (
    "A Wolf found great difficulty in getting at the sheep owing to the vigilance of the shepherd "
    "and his dogs. But one day it found the skin of a sheep that had been flayed and thrown aside, "
    "so it put it on over its own pelt and strolled down among the sheep. The Lamb that belonged "
    "to the sheep, whose skin the Wolf was wearing, began to follow the Wolf in the Sheep's "
    "clothing; so, leading the Lamb a little apart, he soon made a meal off her.",
    "A Hare one day ridiculed the short feet and slow pace of the Tortoise, who replied, laughing: "
    "Though you be swift as the wind, I will beat you in a race. The Hare, believing her "
    "assertion to be simply impossible, assented to the proposal. On the day appointed for the "
    "race the two started together. The Tortoise never for a moment stopped, but went on with a "
    "slow but steady pace straight to the end of the course. The Hare, lying down by the wayside, "
    "fell fast asleep. At last waking up, and moving as fast as he could, he saw the Tortoise had "
    "reached the goal, and was comfortably dozing after her fatigue.",
    "A Lion was awakened from sleep by a Mouse running over his face. Rising up angrily, he caught "
    "him and was about to kill him, when the Mouse piteously entreated, saying: If you would only "
    "spare my life, I would be sure to repay your kindness. The Lion laughed and let him go. It "
    "happened shortly after this that the Lion was caught by some hunters, who bound him by "
    "strong ropes to the ground. The Mouse, recognizing his roar, came and gnawed the rope with "
    "his teeth, and set him free.",
    "A Crow perched on a tree with a piece of cheese in her beak. A Fox observed her and set his "
    "wits to work to discover some way of getting the cheese. Coming and standing under the tree "
    "he looked up and said, What a noble bird I see above me! Her beauty is without equal, the hue "
    "of her plumage exquisite. If only her voice is as sweet as her looks are fair, she ought "
    "without doubt to be Queen of the Birds. The Crow was hugely flattered by this, and just to "
    "show the Fox that she could sing she gave a loud caw. Down came the cheese, of course, and "
    "the Fox, snatching it up, said, You have a voice, madam, I see: what you want is wits.",
    "A Crow perishing with thirst saw a pitcher, and hoping to find water, flew to it with "
    "delight. When he reached it, he discovered to his grief that it contained so little water "
    "that he could not possibly get at it. He tried everything he could think of to reach the "
    "water, but all his efforts were in vain. At last he collected as many stones as he could "
    "carry and dropped them one by one with his beak into the pitcher, until he brought the water "
    "within his reach and thus saved his life.",
    "A Shepherd Boy tended his master's sheep near a dark forest not far from the village. Soon he "
    "found life in the pasture very dull. All he could do to amuse himself was to talk to his dog "
    "or play on his shepherd's pipe. One day as he sat watching the sheep and the quiet forest, "
    "and thinking what he would do should he see a wolf, he thought of a plan to amuse himself. "
    "His master had told him to call for help should a wolf attack the flock, and the villagers "
    "would drive it away. So now, though he had not seen anything that even looked like a wolf, "
    "he ran toward the village shouting at the top of his voice, Wolf! Wolf!",
    "In a field one summer's day a Grasshopper was hopping about, chirping and singing to its "
    "heart's content. An Ant passed by, bearing along with great toil an ear of corn he was "
    "taking to the nest. Why not come and chat with me, said the Grasshopper, instead of toiling "
    "and moiling in that way? I am helping to lay up food for the winter, said the Ant, and "
    "recommend you to do the same. Why bother about winter? said the Grasshopper; we have got "
    "plenty of food at present. But the Ant went on its way and continued its toil.",
    "The North Wind and the Sun had a quarrel about which of them was the stronger. While they "
    "were disputing with much heat and bluster, a Traveler passed along the road wrapped in a "
    "cloak. Let us agree, said the Sun, that he is the stronger who can strip that Traveler of "
    "his cloak. Very well, growled the North Wind, and at once sent a cold, howling blast against "
    "the Traveler. With the first gust of wind the ends of the cloak whipped about his body. But "
    "he immediately wrapped it closely around him, and the harder the Wind blew, the tighter he "
    "held it to him. Then the Sun came out and beamed warmly, and the Traveler took off his cloak.",
    "A Dog, to whom the butcher had thrown a bone, was hurrying home with his prize as fast as he "
    "could go. As he crossed a narrow footbridge, he happened to look down and saw himself "
    "reflected in the quiet water as if in a mirror. But the greedy Dog thought he saw a real Dog "
    "carrying a bone much bigger than his own. If he had stopped to think he would have known "
    "better. But instead of thinking, he dropped his bone and sprang at the Dog in the river, "
    "only to find himself swimming for dear life to reach the shore.",
    "A Town Mouse once visited a relative who lived in the country. For lunch the Country Mouse "
    "served wheat stalks, roots, and acorns, with a dash of cold water for drink. The Town Mouse "
    "ate very sparingly, nibbling a little of this and a little of that, and by her manner making "
    "it very plain that she ate the simple food only to be polite. After the meal the friends "
    "had a long talk, or rather the Town Mouse talked about her life in the city while the "
    "Country Mouse listened.",
    "A Fox one day spied a beautiful bunch of ripe grapes hanging from a vine trained along the "
    "branches of a tree. The grapes seemed ready to burst with juice, and the Fox's mouth watered "
    "as he gazed longingly at them. The bunch hung from a high branch, and the Fox had to jump for "
    "it. The first time he jumped he missed it by a long way. So he walked off a short distance "
    "and took a running leap at it, only to fall short once more. Again and again he tried, but "
    "in vain. Now he sat down and looked at the grapes in disgust. What a fool I am, he said. "
    "Here I am wearing myself out to get a bunch of sour grapes that are not worth gaping for.",
    "A Milkmaid had been out to milk the cows and was returning from the field with the shining "
    "milk pail balanced nicely on her head. As she walked along, her pretty head was busy with "
    "plans for the days to come. This good, rich milk, she mused, will give me plenty of cream "
    "to churn. The butter I make I will take to market, and with the money I get for it I will "
    "buy a lot of eggs for hatching. Forgetting all about the pail, she tossed her head proudly, "
    "and down went the pail of milk to the ground.",
)

VOICES: tuple[tuple[str, int], ...] = (
    ("en-us", 165),
    ("en", 150),
    ("en-us", 180),
    ("en-gb-x-rp", 160),
)


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    duration_s: float


def build_corpus(out_dir: Path, repeat: int = 1) -> list[Clip]:
    """Synthesise every fable (``repeat`` times, with different voices) into ``out_dir``."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed: apt-get install espeak-ng")
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for r in range(repeat):
        for i, text in enumerate(FABLES):
            voice, wpm = VOICES[(i + r) % len(VOICES)]
            key = hashlib.sha256(f"{voice}|{wpm}|{text}".encode()).hexdigest()[:12]
            path = out_dir / f"fable{i:02d}-{r}-{key}.wav"
            if not path.exists():
                tmp = path.with_suffix(".part")
                subprocess.run(
                    ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(tmp), text],
                    check=True,
                    capture_output=True,
                )
                tmp.rename(path)
            with wave.open(str(path)) as w:
                clips.append(Clip(path, text, w.getnframes() / w.getframerate()))
    return clips


# Spanish read by espeak-ng's "es" voice, for multilingual models (Whisper base recognises it
# as Spanish; bench/NOTES.md, multilingual).
SPANISH = (
    "El gato duerme en la casa mientras llueve en la ciudad. Mañana iremos al mercado para "
    "comprar fruta fresca.",
    "Un pastor cuidaba sus ovejas cerca de un bosque oscuro. Cada tarde subía a la colina y "
    "miraba el valle en silencio.",
    "La biblioteca del pueblo abre a las nueve de la mañana. Los niños leen cuentos y los "
    "mayores leen el periódico junto a la ventana.",
    "El tren salió de la estación con una hora de retraso. Los viajeros esperaban con paciencia "
    "y hablaban del tiempo y de sus familias.",
)


def build_spanish_corpus(out_dir: Path) -> list[Clip]:
    """The Spanish sentences above, one WAV each, at 150 words a minute."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, text in enumerate(SPANISH):
        key = hashlib.sha256(f"es|150|{text}".encode()).hexdigest()[:12]
        path = out_dir / f"es{i:02d}-{key}.wav"
        if not path.exists():
            tmp = path.with_suffix(".part")
            subprocess.run(
                ["espeak-ng", "-v", "es", "-s", "150", "-w", str(tmp), text],
                check=True,
                capture_output=True,
            )
            tmp.rename(path)
        with wave.open(str(path)) as w:
            clips.append(Clip(path, text, w.getnframes() / w.getframerate()))
    return clips
