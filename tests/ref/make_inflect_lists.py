"""Generate crates/evals/src/benchmarks/diwali/inflect/lists.rs: the word lists of inflect 7.6.0 that plural_noun and
singular_noun consult, taken from the installed module so that every entry
(including the derived "si_" forms and the inverted dictionaries) is exactly
what inflect builds at import time.

    /work/diwali-py/bin/python tests/ref/make_inflect_lists.py   # rewrites lists.rs, needs inflect 7.6.0
"""

import json
from pathlib import Path

import inflect
from inflect import engine

assert inflect.__version__ if hasattr(inflect, "__version__") else True
M = inflect  # module globals hold every list


def flat(bysize):
    """A bysize dict (length -> set) as a sorted list."""
    return sorted(w for s in bysize.values() for w in s)


def si_pron(case):
    """si_pron[case] resolved for the default gender ("neuter")."""
    e = engine()
    return {k: M.get_si_pron(case, k, e.thegender) for k in M.si_pron[case]}


# (Rust name, value, comment).  Lists keep inflect's order where it matters
# (prepositions); sets and bysize dicts are emitted sorted.
LISTS = [
    # --- plural_noun ---
    ("PL_SB_UNINFLECTED_COMPLETE", M.pl_sb_uninflected_complete, "last word, lower-cased: uninflected"),
    ("PL_SB_UNINFLECTED_CAPS", M.pl_sb_uninflected_caps, "whole word, exact: uninflected"),
    ("PL_SB_UNINFLECTED_ENDINGS", flat(M.pl_sb_uninflected_bysize), "lower-cased endings: uninflected"),
    ("PL_PREP_LIST_DA", M.pl_prep_list_da, "prepositions, in inflect's order"),
    ("PL_SB_U_MAN_MANS", flat(M.pl_sb_U_man_mans_bysize), "lower-cased endings: -man -> -mans"),
    ("PL_SB_U_MAN_MANS_CAPS", flat(M.pl_sb_U_man_mans_caps_bysize), "exact endings: -man -> -mans"),
    ("PL_SB_U_LOUSE_LICE", M.pl_sb_U_louse_lice_list, "whole word: -louse -> -lice"),
    ("PL_SB_U_CH_CHS", flat(M.pl_sb_U_ch_chs_bysize), "endings: -ch -> -chs"),
    ("PL_SB_U_EX_ICES", flat(M.pl_sb_U_ex_ices_bysize), "endings: -ex -> -ices"),
    ("PL_SB_U_IX_ICES", flat(M.pl_sb_U_ix_ices_bysize), "endings: -ix -> -ices"),
    ("PL_SB_U_UM_A", flat(M.pl_sb_U_um_a_bysize), "endings: -um -> -a"),
    ("PL_SB_U_US_I", flat(M.pl_sb_U_us_i_bysize), "endings: -us -> -i"),
    ("PL_SB_U_ON_A", flat(M.pl_sb_U_on_a_bysize), "endings: -on -> -a"),
    ("PL_SB_U_A_AE", flat(M.pl_sb_U_a_ae_bysize), "endings: -a -> -ae"),
    ("PL_SB_SINGULAR_S_COMPLETE", M.pl_sb_singular_s_complete, "last word, lower-cased: + -es"),
    ("PL_SB_SINGULAR_S_ENDINGS", flat(M.pl_sb_singular_s_bysize), "endings: + -es"),
    ("PL_SB_Z_ZES", flat(M.pl_sb_z_zes_bysize), "endings: -z -> -zes"),
    ("PL_SB_ZE_ZES", flat(M.pl_sb_ze_zes_bysize), "endings: -ze -> -zes"),
    ("PL_SB_U_O_OS_COMPLETE", sorted(M.pl_sb_U_o_os_complete), "last word, lower-cased: -o -> -os"),
    ("PL_SB_U_O_OS_ENDINGS", flat(M.pl_sb_U_o_os_bysize), "lower-cased endings (some entries capitalised, so never match): -o -> -os"),
    # --- singular_noun ---
    ("PL_SB_C_US_US", M.pl_sb_C_us_us, "last word, lower-cased: no singular (False)"),
    ("SI_SB_OIS_OI_CASE", M.si_sb_ois_oi_case, "whole word, exact: drop the s"),
    ("SI_SB_U_MAN_MANS", flat(M.si_sb_U_man_mans_bysize), "lower-cased endings: -mans -> -man"),
    ("SI_SB_U_MAN_MANS_CAPS", flat(M.si_sb_U_man_mans_caps_bysize), "exact endings: -mans -> -man"),
    ("SI_SB_U_LOUSE_LICE", M.si_sb_U_louse_lice_list, "whole word: -lice -> -louse"),
    ("SI_SB_U_CH_CHS", flat(M.si_sb_U_ch_chs_bysize), "endings: -chs -> -ch"),
    ("SI_SB_U_EX_ICES", flat(M.si_sb_U_ex_ices_bysize), "endings: -ices -> -ex"),
    ("SI_SB_U_IX_ICES", flat(M.si_sb_U_ix_ices_bysize), "endings: -ices -> -ix"),
    ("SI_SB_U_UM_A", flat(M.si_sb_U_um_a_bysize), "endings: -a -> -um"),
    ("SI_SB_U_US_I", flat(M.si_sb_U_us_i_bysize), "endings: -i -> -us"),
    ("SI_SB_U_ON_A", flat(M.si_sb_U_on_a_bysize), "endings: -a -> -on"),
    ("SI_SB_U_A_AE", flat(M.si_sb_U_a_ae_bysize), "endings: -ae -> -a"),
    ("SI_SB_USES_USE_CASE", M.si_sb_uses_use_case, "whole word, exact: -uses -> -use"),
    ("SI_SB_USES_USE", M.si_sb_uses_use, "last word, lower-cased: -uses -> -use"),
    ("SI_SB_IES_IE_CASE", M.si_sb_ies_ie_case, "whole word, exact: -ies -> -ie"),
    ("SI_SB_IES_IE", M.si_sb_ies_ie, "last word, lower-cased: -ies -> -ie"),
    ("SI_SB_OES_OE_CASE", M.si_sb_oes_oe_case, "whole word, exact: -oes -> -oe"),
    ("SI_SB_OES_OE", M.si_sb_oes_oe, "last word, lower-cased: -oes -> -oe"),
    ("SI_SB_SSES_SSE_CASE", M.si_sb_sses_sse_case, "whole word, exact: -sses -> -sse"),
    ("SI_SB_SSES_SSE", M.si_sb_sses_sse, "last word, lower-cased: -sses -> -sse"),
    ("SI_SB_SINGULAR_S_COMPLETE", M.si_sb_singular_s_complete, "last word, lower-cased: drop -es"),
    ("SI_SB_SINGULAR_S_ENDINGS", flat(M.si_sb_singular_s_bysize), "endings: drop -es"),
    ("SI_SB_Z_ZES", M.si_sb_z_zes, "last word, lower-cased: drop -es"),
    ("SI_SB_ZZES_ZZ", M.si_sb_zzes_zz, "last word, lower-cased: drop -es"),
    ("SI_SB_CHES_CHE_CASE", M.si_sb_ches_che_case, "whole word, exact: -ches -> -che"),
    ("SI_SB_CHES_CHE", M.si_sb_ches_che, "last word, lower-cased: -ches -> -che"),
    ("SI_SB_XES_XE", M.si_sb_xes_xe, "last word, lower-cased: -xes -> -xe"),
    ("SI_SB_VES_VE_CASE", M.si_sb_ves_ve_case, "whole word, exact: -ves -> -ve"),
    ("SI_SB_VES_VE", M.si_sb_ves_ve, "last word, lower-cased: -ves -> -ve"),
    ("SI_SB_U_O_OS_COMPLETE", sorted(M.si_sb_U_o_os_complete), "last word, lower-cased (capitalised entries never match): -os -> -o"),
    ("SI_SB_U_O_OS_ENDINGS", flat(M.si_sb_U_o_os_bysize), "lower-cased endings (capitalised entries never match): -os -> -o"),
    ("SI_SB_ES_IS", M.si_sb_es_is, "whole word, exact: -es -> -is"),
]

MAPS = [
    ("PL_SB_IRREGULAR", M.pl_sb_irregular, "last word, lower-cased -> plural ('modern|classical')"),
    ("PL_SB_IRREGULAR_CAPS", M.pl_sb_irregular_caps, "last word, exact -> plural"),
    ("PL_SB_IRREGULAR_COMPOUND", M.pl_sb_irregular_compound, "last two words -> plural"),
    ("PL_PRON_NOM", M.pl_pron_nom, "nominative pronouns"),
    ("PL_PRON_ACC", M.pl_pron_acc, "accusative pronouns"),
    ("SI_SB_IRREGULAR", M.si_sb_irregular, "last word, lower-cased -> singular"),
    ("SI_SB_IRREGULAR_CAPS", M.si_sb_irregular_caps, "last word, exact -> singular"),
    ("SI_SB_IRREGULAR_COMPOUND", M.si_sb_irregular_compound, "last two words -> singular"),
    ("SI_PRON_NOM", si_pron("nom"), "nominative pronouns, singular for the default gender (neuter)"),
    ("SI_PRON_ACC", si_pron("acc"), "accusative pronouns, singular for the default gender (neuter)"),
]


def lit(s):
    # json.dumps gives a valid Rust string literal for these ASCII words
    assert s.isascii() and "\\" not in s, s
    return json.dumps(s)


def wrap(items, indent="    ", width=96):
    lines, cur = [], indent
    for it in items:
        piece = it + ","
        if len(cur) + len(piece) + 1 > width and cur.strip():
            lines.append(cur.rstrip())
            cur = indent
        cur += piece + " "
    if cur.strip():
        lines.append(cur.rstrip())
    return "\n".join(lines)


out = [
    "//! Word lists of inflect 7.6.0 (MIT licence, Paul Dyson / Jason R. Coombs)",
    "//! used by `plural_noun` and `singular_noun`.",
    "//!",
    "//! GENERATED by `gen_lists.py` from the installed inflect module; do not edit.",
    "//! Lists are matched as whole words (`contains`) or as endings (`ends_with`),",
    "//! as each comment says, mirroring how inflect tests them.",
    "",
]
for name, value, comment in LISTS:
    value = list(value)
    out.append(f"/// {comment}")
    out.append(f"pub const {name}: &[&str] = &[")
    out.append(wrap([lit(w) for w in value]))
    out.append("];")
    out.append("")
for name, value, comment in MAPS:
    out.append(f"/// {comment}")
    out.append(f"pub const {name}: &[(&str, &str)] = &[")
    out.append(wrap([f"({lit(k)}, {lit(v)})" for k, v in sorted(value.items())]))
    out.append("];")
    out.append("")

Path(__file__).resolve().parent.joinpath("../../crates/evals/src/benchmarks/diwali/inflect/lists.rs").write_text("\n".join(out))
print("wrote lists.rs")
