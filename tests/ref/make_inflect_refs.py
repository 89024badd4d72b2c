"""inflect 7.6.0's plural_noun / singular_noun for many inputs, the references of ethos'
port (crates/evals/src/benchmarks/diwali/inflect/, test `tests/inflect_refs.rs`).

    python3 make_inflect_refs.py DIWALI_EVALUATION_DIR          # the committed set
    python3 make_inflect_refs.py DIWALI_EVALUATION_DIR --full   # also GSM8K n-grams, 40k fuzz

DIWALI_EVALUATION_DIR is the folder holding matching/, csis/, inputs/ and reference_outputs/
from github.com/pramitsahoo/culture-evaluation. The committed set is packed with zstd into
tests/fixtures/diwali/inflect_refs.tsv.zst (--full writes inflect_refs_full.tsv.zst, not
committed: 389k rows, all of which the port matches too).

One row per distinct input, sorted: ``input <TAB> plural <TAB> singular``.
Each field is either ``=`` followed by the escaped string (backslash, tab,
newline and carriage return as \\\\ \\t \\n \\r), ``F`` for inflect's False, or
``E:<ExceptionName>`` where inflect raises.

Inputs: every string in inflect's own word lists and dictionaries; the DIWALI
concept names, CSIS feature names and replaced-concept targets; every word and
adjacent 2- and 3-word sequence of the GSM8K test questions; generated
compounds; Unicode case and whitespace edge cases; hand-made edge cases.
"""

import itertools
import json
import random
import re
import string
import sys
from pathlib import Path

import inflect

HERE = Path(__file__).resolve().parent
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else None
FULL = "--full" in sys.argv
P = inflect.engine()


def normalize(w):
    """The DIWALI matcher's normalisation."""
    return re.sub(r"[^a-zA-Z0-9₹\s]", "", str(w)).lower().strip()


# ---------------------------------------------------------------- inputs


def strings_in(value):
    """All strings inside a (nested) container, dict keys included."""
    if isinstance(value, str):
        yield value
        if "|" in value:
            yield from value.split("|")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from strings_in(v)


def inflect_words():
    out = set()
    for name, value in vars(inflect).items():
        if name.startswith("__") or not isinstance(value, (dict, list, tuple, set, frozenset)):
            continue
        for s in strings_in(value):
            out.update({s, s.lower(), s.capitalize(), s.upper()})
    return out


def with_norm(words):
    out = set()
    for w in words:
        if isinstance(w, str):
            out.update({w, normalize(w)})
    return out


def concept_names():
    data = json.loads((DATA / "matching/concepts_filtered.jsonl").read_text())
    return with_norm(c.get("name") for entry in data for c in entry.get("concepts", []))


def csis_names():
    data = json.loads((DATA / "csis/india_cultural_features.json").read_text())
    return with_norm(item.get("name") for items in data.values() for item in items)


def replaced_targets():
    files = [DATA / "matching/llama-3.1-8b_gsm_8k_test.json", DATA / "matching/mistral-7b_gsm_8k_test.json"]
    files += sorted((DATA / "reference_outputs").glob("*.json"))
    out = set()
    for f in files:
        try:
            items = json.loads(f.read_text())
        except ValueError:
            continue
        for item in items:
            try:
                parsed = json.loads(item) if isinstance(item, str) else item
            except ValueError:
                continue
            entries = parsed if isinstance(parsed, list) else [parsed]
            for e in entries:
                if isinstance(e, dict) and isinstance(e.get("replaced_concepts"), dict):
                    for source, target in e["replaced_concepts"].items():
                        out.update(with_norm([target, source]))
    return out


def gsm8k_phrases():
    out = set()
    for line in (DATA / "inputs/gsm8k_test.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        tokens = json.loads(line)["question"].split()
        for t in tokens:
            out.update({t, t.lower(), normalize(t)})
        for n in (2, 3):
            for i in range(len(tokens) - n + 1):
                phrase = " ".join(tokens[i : i + n])
                out.update({phrase, normalize(phrase)})
    return out


STEMS = ["cat", "Bus", "box", "SHEEP", "child", "brother", "mother", "man", "woman", "louse",
         "status", "thief", "Mary", "court", "attorney", "son", "gun", "he", "them", "pair",
         "scissors", "news", "₹500", "123", "I"]


def compounds():
    out = set()
    preps = inflect.pl_prep_list_da + ["per", "a", "general", "martial", "force", "degree", "and"]
    for a, b in itertools.product(STEMS, repeat=2):
        for prep in preps:
            for fmt in ("{a} {p} {b}", "{a}-{p}-{b}", "{a} {p} a {b}", "{a}-{p}-a-{b}",
                        "x {a} {p} {b}", "{a} {p}"):
                out.add(fmt.format(a=a, p=prep, b=b))
    for prep in inflect.pl_prep_list_da:
        for pron in list(inflect.pl_pron_acc) + list(inflect.si_pron["acc"]) + ["I", "we"]:
            out.update({f"{prep} {pron}", f"{prep}  {pron}", f"{prep}\t{pron}", f"{prep.upper()} {pron}"})
    return out


ENDINGS = ["s", "ss", "us", "is", "ies", "ves", "oes", "men", "ice", "a", "um", "on", "ex", "ix",
           "eau", "ieu", "ch", "sh", "x", "z", "zz", "ze", "o", "y", "ys", "es", "ses", "xes", "zes",
           "ches", "shes", "sses", "eses", "zzes", "ae", "ata", "i", "ina", "ices", "man", "mans",
           "f", "fe", "ff", "eaf", "elf", "arf", "quy", "quies", "person", "persons", "people",
           "mouse", "mice", "louse", "lice", "goose", "geese", "tooth", "teeth", "foot", "feet",
           "taco", "tacos", "ceps", "zoon", "zoa", "trix", "trices", "ynx", "inx", "anx", "ois",
           "'s", "s'", "'", "uses", "houses", "shoes", "os", "aos", "eos", "ios", "ay", "ey", "oy"]

SPACES = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0",
          "\u1680", "\u2003", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b"]


def edge_cases():
    out = {"", "₹500", "₹", "Mother-In-Law", "SHEEP", "Bus", "son of a gun", "mother in law",
           "passer-by", "court martial", "attorney general", "Attorney General", "major general",
           "lieutenant general", "rock star general", "pound force", "prima donna",
           "prima-donna", "the prima donna", "degree celsius", "degree", "to them", "123", "0",
           "42s", "1990s", "Mary", "Marys", "Romany", "Jerry", "Rom", "Roma", "I", "We", "x|y",
           "a|b c", "|", "||", "-", "--", "-of-", "a-of-b", "a--of-b", "- -of-b", "'s", "cat's",
           "cats'", "children's", "boss's", "James's", "ſtar general", "İstanbul", "KELVIN k",
           "\u212aelvin", "ıi", "cafe\u0301", "naïve", "Straße", "STRASSE", "ΑΣ", "ΟΔΟΣ", "όσος",
           "ǅemal", "ǆemal", "ǄEMAL", "ﬁsh", "ﬂower", "ẞx-of-y", "ßx-of-y", "\U0001F600",
           "dog\U0001F600", "नमस्ते", "दिवाली", "diya", "diyas", "saree", "sarees", "dhoti",
           "dhotis", "x-general-general", "x per a per b", "a a a", "x a y", " a ", "-a-"}
    for c in string.ascii_letters + string.digits + string.punctuation:
        out.update({c, c + "s", c * 2, c * 3})
    stems = ["", "b", "ca", "bo", "Ca", "CA", "ta", "quo", "hero", "bac"]
    for e in ENDINGS:
        for s in stems:
            out.update({s + e, (s + e).upper(), (s + e).capitalize()})
    for sp in SPACES:
        out.update({sp, sp * 2, sp + "cat", "cat" + sp, sp + "cat" + sp, "big" + sp + "cat",
                    "cats" + sp + "of" + sp + "tea", "a" + sp + "b" + sp + "c", sp + "\n",
                    "\n" + sp, "x" + sp + "-of-a-y", "x" + sp + "of a y", "to" + sp + "him"})
    out.update({"a\nb", "\na", "a\n", "\n\n", " \n ", "x- -of-y", "p of a-  -of-a-z",
                "cat \n", "\ncat\n", "x of a- y", "x of a-", "\r\n", "cat\r\n"})
    # long and deep inputs
    out.update({"a" * 300, "cat " * 200, ("x" * 1000) + "s", "₹" * 500, "-of-" * 100})
    for unit in ("x per ", "x of a ", "x-general-", "x a ", "a-of-", "x of "):
        for n in (10, 100, 300, 600, 900, 3000):
            out.add(unit * n + "x")
    return out


def unicode_cases():
    """Every character whose case mappings are not trivial, in a few shapes
    that make postprocess upper-case or capitalise."""
    out = set()
    for cp in range(0x110000):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if c.lower() != c or c.upper() != c or c.capitalize() != c.upper():
            out.update({c, c + "x", "x" + c, c + "X-of-y", c + "x-of-y", "X" + c + "Σ"})
    return out


# Characters that newer Unicode versions (as in Rust's tables) case-map but
# Python 3.11 (Unicode 14.0) does not.
NEWER_CASED = [0x19B, 0x264, 0x1C89, 0x1C8A, *range(0xA7CB, 0xA7DD), *range(0x10D50, 0x10D86),
               *range(0x16EA0, 0x16ED4)]


# Characters whose Cased / Case_Ignorable properties differ between Unicode
# 14.0 and Rust's tables (see src/pystr.rs), which matter next to a Σ.
PROPS_DIFFER = [0x295, 0x897, 0xECE, *range(0x1ACF, 0x1ADE), *range(0x1AE0, 0x1AEC), 0x1C89, 0x1C8A,
                *range(0xA7CB, 0xA7D0), 0xA7D2, 0xA7D4, 0xA7DA, 0xA7DB, 0xA7DC, 0xA7F1, 0x10D4E,
                *range(0x10D50, 0x10D66), *range(0x10D69, 0x10D6E), *range(0x10D6F, 0x10D86), 0x10EC5,
                *range(0x10EFA, 0x10F00), 0x11241, *range(0x113BB, 0x113C1), 0x113CE, 0x113D0, 0x113D2,
                0x113E1, 0x113E2, 0x1171E, 0x11B60, 0x11B62, 0x11B63, 0x11B64, 0x11B66, 0x11DD9, 0x11F00,
                0x11F01, *range(0x11F36, 0x11F3B), 0x11F40, 0x11F42, 0x11F5A, *range(0x13439, 0x13441),
                *range(0x13447, 0x13456), *range(0x1611E, 0x1612A), *range(0x1612D, 0x16130),
                *range(0x16D40, 0x16D43), 0x16D6B, 0x16D6C, *range(0x16EA0, 0x16EB9),
                *range(0x16EBB, 0x16ED4), 0x16FF2, 0x16FF3, *range(0x1DF25, 0x1DF2B),
                *range(0x1E030, 0x1E06E), 0x1E08F, *range(0x1E4EB, 0x1E4F0), 0x1E5EE, 0x1E5EF, 0x1E6E3,
                0x1E6E6, 0x1E6EE, 0x1E6EF, 0x1E6F5, 0x1E6FF]


def sigma_cases():
    """Σ next to characters of every case class, in phrases whose output shows
    the lowered word (the "-of-" rule works on word.lower())."""
    out = set()
    others = [0x41, 0x61, 0x31, 0x20, 0x27, 0x2E, 0x2D, 0x301, 0x345, 0x2B0, 0x3A3, 0x3C3, 0x1C5, 0xAD]
    for cp in sorted(set(NEWER_CASED + PROPS_DIFFER + others)):
        c = chr(cp)
        out.update({"A" + c + "Σ-of-x", "AΣ" + c + "b-of-x", "AΣ" + c + "-of-x", c + "Σ-of-x",
                    "A" + c + c + "Σ" + c + "-of-x", "aΣ" + c + "Σ-of-x"})
    return out


def newer_unicode_cases():
    out = set()
    for cp in NEWER_CASED:
        c = chr(cp)
        out.update({c, c + "x", "X" + c, c + "X-of-y", "XΣ" + c, "XΣ" + c + "Σ", c + "Σ"})
    return out


def ignorecase_cases():
    """Letters that Python's IGNORECASE regexes match beyond ASCII."""
    out = set()
    for a, b in [("i", "\u0130"), ("i", "\u0131"), ("s", "\u017f"), ("k", "\u212a")]:
        for phrase in ["lieutenant general", "brigadier general", "x-general", "court martial",
                       "court-martial", "pound force", "rock star general", "x in a y", "x-into-a-y",
                       "x since a y", "x besides a y", "cats with a hat", "x as a y"]:
            out.add(phrase.replace(a, b))
            out.add(phrase.replace(a, b, 1))
    return out


def fuzz_cases(seed=7, count=40000):
    """Random phrases made of words, prepositions and separators, and random
    short strings of awkward characters."""
    rng = random.Random(seed)
    words = sorted(set(STEMS + inflect.pl_prep_list_da + list(inflect.pl_sb_irregular)
                       + ["a", "A", "per", "general", "General", "court", "martial", "pound",
                          "force", "degree", "prima", "donna", "s", "es", "x", "y", "", "I"]))
    seps = [" ", " ", " ", "-", "-", "  ", "\t", "|", "'", " a ", "-a-", "\u00a0", "\x1c"]
    out = set()
    for _ in range(count):
        n = rng.randint(1, 6)
        parts = [rng.choice(words)]
        for _ in range(n - 1):
            parts += [rng.choice(seps), rng.choice(words)]
        out.add("".join(parts))
    alphabet = "abcsyoxzeimnuAEISY -|'\t\n\u00a0\u0130\u017f\u03a3\u20b9019"
    for _ in range(count // 2):
        out.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
    return out


def all_inputs():
    # Every 16th generated compound in the committed set (all with --full).
    some_compounds = set(sorted(compounds())[:: 1 if FULL else 16])
    parts = [inflect_words(), concept_names(), csis_names(), replaced_targets(),
             some_compounds, edge_cases(), unicode_cases(), newer_unicode_cases(), sigma_cases(),
             ignorecase_cases(), fuzz_cases(count=40000 if FULL else 3000)]
    if FULL:
        parts.append(gsm8k_phrases())
    out = set().union(*parts)
    # strings that are not valid UTF-8 (lone surrogates) cannot reach Rust
    return sorted(s for s in out if isinstance(s, str) and not re.search("[\ud800-\udfff]", s))


# ---------------------------------------------------------------- outputs


def escape(s):
    return "=" + s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def call(f, s):
    # Call depth matters for RecursionError: module -> main -> rows -> call ->
    # inflect, as deep as the DIWALI matcher calls it.
    try:
        r = f(s)
    except Exception as e:  # noqa: BLE001 - every exception is a reference result
        return "E:" + type(e).__name__
    return "F" if r is False else escape(r)


def rows(inputs):
    for s in inputs:
        yield "\t".join((escape(s), call(P.plural_noun, s), call(P.singular_noun, s)))


def main():
    import subprocess
    if DATA is None:
        sys.exit(__doc__)
    inputs = all_inputs()
    text = "".join(line + "\n" for line in rows(inputs)).encode()
    name = "inflect_refs_full.tsv.zst" if FULL else "inflect_refs.tsv.zst"
    out = HERE / ".." / "fixtures" / "diwali" / name
    packed = subprocess.run(["zstd", "-19", "-q", "-c"], input=text, check=True, capture_output=True).stdout
    out.write_bytes(packed)
    print(f"{len(inputs)} rows, {len(text)} bytes -> {out} ({len(packed)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
