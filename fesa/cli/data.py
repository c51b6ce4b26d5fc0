"""Corpora and manifests: prepare-iemocap, -emobox, -table, pool-audio, make-demo-corpus, make-pretraining-corpus,
convert-segments."""

import argparse
import time
from pathlib import Path

from fesa.cli.common import Subparsers, add_options, add_out, add_overwrite, add_own_out, ints, output_path
from fesa.options import POOL_INFO, SEGMENT_FORMATS, DemoCorpusOptions, HoldoutOptions, PretrainingCorpusOptions


def add_parsers(sub: Subparsers) -> None:
    _add_prepare_iemocap(sub)
    _add_prepare_emobox(sub)
    _add_prepare_table(sub)
    _add_pool_audio(sub)
    _add_make_demo_corpus(sub)
    _add_make_pretraining_corpus(sub)
    _add_convert_segments(sub)


def _prepare_iemocap(args: argparse.Namespace) -> None:
    from fesa.corpora.iemocap import KNOWN_LABEL_TOTALS, format_count_table, prepare_iemocap

    summary = prepare_iemocap(
        Path(args.iemocap_root),
        Path(args.out_dir),
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        check_totals=args.check_totals,
        validation=args.validation,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(f"kept {summary['utterances']} utterances; dropped codes: {summary['dropped_codes'] or 'none'}")
    print(format_count_table(summary["table"]))
    print("folds (train / valid / test):")
    for k, sizes in summary["folds"].items():
        print(f"  fold{k}: {sizes['train']} / {sizes['valid']} / {sizes['test']}")
    total = f"{sum(KNOWN_LABEL_TOTALS.values()):,} utterances"
    if summary["known_total_mismatches"]:
        print(f"WARNING: these counts differ from a complete IEMOCAP release ({total}):")
        for problem in summary["known_total_mismatches"]:
            print(f"  - {problem}")
    elif summary["known_totals_checked"]:
        print(f"counts match a complete IEMOCAP release ({total})")
    print(f"wrote {args.out_dir}/fold{{1..5}}/{{train,valid,test}}.{{tsv,emo}}, dict.emo.txt, utterances.tsv")


def _add_prepare_iemocap(sub: Subparsers) -> None:
    p = sub.add_parser(
        "prepare-iemocap",
        help="IEMOCAP release -> leave-one-session-out manifests (4 classes, exc merged into hap)",
        description="Reads SessionN/dialog/EmoEvaluation/*.txt and the wavs of SessionN/sentences/wav, keeps "
        "neu, hap+exc, ang, sad, and writes OUT_DIR/fold{1..5}/{train,valid,test}.{tsv,emo} and dict.emo.txt. "
        "Fold k tests on Session k; valid is a label-stratified holdout of the other four sessions (--validation speakers: whole speakers of them).",
    )
    p.add_argument("iemocap_root", help="folder holding Session1 .. Session5 (IEMOCAP_full_release)")
    p.add_argument("out_dir", type=output_path, help="where the fold folders go")
    add_options(p, HoldoutOptions, ("valid_fraction", "seed", "validation"))
    totals = p.add_mutually_exclusive_group()
    totals.add_argument(
        "--check-totals", dest="check_totals", action="store_true", default=True, help="compare with a full release's known counts (default)"
    )
    totals.add_argument(
        "--no-check-totals",
        dest="check_totals",
        action="store_false",
        help="do not compare (a corpus in IEMOCAP's layout that is no release: the demo's)",
    )
    add_overwrite(p, "replace the manifests already in OUT_DIR (swapped in whole once all are written)")
    p.set_defaults(func=_prepare_iemocap)


def _prepare_emobox(args: argparse.Namespace) -> None:
    from fesa.corpora.emobox import prepare_emobox

    start = time.perf_counter()
    summary = prepare_emobox(
        Path(args.corpus_dir),
        Path(args.out_dir),
        Path(args.audio_root),
        args.valid_fraction,
        args.seed,
        drop_unmapped=args.drop_unmapped,
        overwrite=args.overwrite,
        validation=args.validation,
        progress=not args.quiet,
        allow_outside_root=args.allow_outside_root,
    )
    if summary["dropped"]["unmapped_labels"]:
        print(f"dropped (label not in label_map.json): {summary['dropped']['unmapped_labels']}")
    _print_prepared(summary, args.out_dir, start)


def _print_prepared(summary: dict, out_dir: str, start: float) -> None:
    """What prepare-emobox and prepare-table print: classes, counts per fold and split, the audio converted."""
    classes = summary["classes"]
    print(f"{summary['utterances']} utterances, {len(classes)} classes: {', '.join(classes)}")
    print("fold  split   " + "  ".join(c.rjust(6) for c in classes))
    for k, splits in summary["folds"].items():
        for split, counts in splits.items():
            print(f"fold{k} {split:<6} " + "  ".join(str(counts.get(c, 0)).rjust(6) for c in classes))
        if "valid" in summary:
            print(f"      valid: {summary['valid'][k]}")
    audio = summary["audio"]
    print(f"audio: {audio['converted']} converted, {audio['reused']} reused; {time.perf_counter() - start:.1f} s")
    print(f"wrote {out_dir}/fold*/{{train,valid,test}}.{{tsv,emo}}, dict.emo.txt, audio/, utterances.tsv, prepare.json")


def _prepare_table(args: argparse.Namespace) -> None:
    from fesa.corpora.table import prepare_table

    start = time.perf_counter()
    summary = prepare_table(
        Path(args.table),
        Path(args.out_dir),
        Path(args.audio_root) if args.audio_root else None,
        args.valid_fraction,
        args.seed,
        group=args.group,
        folds=args.folds,
        overwrite=args.overwrite,
        validation=args.validation,
        progress=not args.quiet,
        allow_outside_root=args.allow_outside_root,
    )
    print(f"folds: {summary['folds_from']}")
    _print_prepared(summary, args.out_dir, start)


def _add_prepare_table(sub: Subparsers) -> None:
    p = sub.add_parser(
        "prepare-table",
        help="your own corpus from a CSV/TSV table (path, emotion; speaker, session, split, start, end) -> fold manifests",
        description="A header with at least path and emotion. With a split column (train/valid/test): one fold as given. "
        "Otherwise leave-one-group-out over --group (default session, else speaker), or --folds N folds of whole groups. "
        "Audio converted once to 16 kHz mono wav under OUT_DIR/audio, with the checks of prepare-emobox; paths stay inside "
        "--audio-root unless --allow-outside-root.",
    )
    p.add_argument("table", help="the CSV or TSV file")
    p.add_argument("out_dir", type=output_path, help="where the fold folders and the converted audio go")
    p.add_argument("--audio-root", help="the folder relative paths start from (default: the table's folder)")
    _add_allow_outside_root(p)
    p.add_argument("--group", help="the column whose groups make the folds (default session, else speaker)")
    p.add_argument("--folds", type=int, help="N folds of whole groups instead of one fold per group")
    add_options(p, HoldoutOptions, ("valid_fraction", "seed", "validation"))
    add_overwrite(p, "replace the manifests already in OUT_DIR (swapped in whole once all are written; converted audio reused)")
    p.set_defaults(func=_prepare_table)


def _add_allow_outside_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept audio paths that lead out of --audio-root ('..' or absolute paths; refused by default, compared as written, "
        "symlinks inside the root followed)",
    )


def _add_prepare_emobox(sub: Subparsers) -> None:
    p = sub.add_parser(
        "prepare-emobox",
        help="one corpus of EmoBox's data/ (RAVDESS, CREMA-D, EmoDB, ESD, ...) -> fold manifests, audio converted to 16 kHz",
        description="Reads CORPUS_DIR/<name>.jsonl, label_map.json and fold_<k>/<name>_{train,valid,test}_fold_<k>.jsonl "
        "(EmoBox's layout), checks everything (unmapped labels, missing or unreadable audio, paths leading out of --audio-root, "
        "repeated keys, the same audio by key, file, overlapping times or content in two splits of a fold, times past the "
        "file, utterances under 25 ms, a fold without its test list, a train split without a class), converts the audio "
        "once to 16 kHz mono wav under OUT_DIR/audio (reused by a rerun when the source is unchanged) and writes "
        "OUT_DIR/fold<k>/{train,valid,test}.{tsv,emo} and dict.emo.txt. Valid: the corpus's own list where it has one, "
        "else a label-stratified holdout of the fold's training list.",
    )
    p.add_argument("corpus_dir", help="one corpus folder of EmoBox's data/, e.g. EmoBox/data/ravdess")
    p.add_argument("out_dir", type=output_path, help="where the fold folders and the converted audio go")
    p.add_argument("--audio-root", required=True, help="the folder the corpus's wav paths are relative to")
    _add_allow_outside_root(p)
    add_options(p, HoldoutOptions, ("valid_fraction", "seed", "validation"))
    p.add_argument("--drop-unmapped", action="store_true", help="drop (and count) utterances whose label label_map.json lacks, instead of stopping")
    add_overwrite(p, "replace the manifests already in OUT_DIR (swapped in whole once all are written; converted audio reused)")
    p.set_defaults(func=_prepare_emobox)


def _make_demo_corpus(args: argparse.Namespace) -> None:
    from fesa.corpora.demo import SourceFilter, make_demo_corpus

    if args.synthesizer == "espeak":
        from fesa.corpora.espeak import Espeak

        synth = Espeak()
    else:
        synth = SourceFilter()
    start = time.perf_counter()
    info = make_demo_corpus(
        Path(args.out_dir),
        utterances_per_speaker=args.utterances_per_speaker,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
        synth=synth,
    )
    print(f"wrote {info['utterances']} utterances to {args.out_dir} in {time.perf_counter() - start:.1f} s (seed {args.seed})")
    if args.emobox_listing:
        from fesa.corpora.emobox import export_listing

        listing = export_listing(Path(args.out_dir), Path(args.emobox_listing), overwrite=args.overwrite)
        print(f"wrote its EmoBox listing to {listing['dir']}: fesa prepare-emobox {listing['dir']} OUT --audio-root {args.out_dir}")


def _add_make_demo_corpus(sub: Subparsers) -> None:
    p = sub.add_parser(
        "make-demo-corpus",
        help="write a small synthetic emotional speech corpus in IEMOCAP's layout",
        description="5 sessions x 2 speakers of source-filter synthesised speech whose prosody depends on "
        "speaker and emotion; only some phrases of an emotional utterance carry its emotion.",
    )
    p.add_argument("out_dir", type=output_path, help="folder to create (it must not exist or be empty, unless --overwrite)")
    add_options(p, DemoCorpusOptions, ("utterances_per_speaker", "seed"))
    add_overwrite(p, "replace a corpus this command wrote at OUT_DIR (swapped in only once complete; any other folder is refused)")
    p.add_argument(
        "--synthesizer",
        choices=["source-filter", "espeak"],
        default="source-filter",
        help="source-filter (the demo's, no dependency) or espeak (espeak-ng voices and words: a corpus made "
        "differently, to check that a configuration is not tuned to the demo's)",
    )
    p.add_argument(
        "--emobox-listing",
        type=output_path,
        metavar="DIR",
        help="also describe the corpus in EmoBox's layout under DIR/demo (jsonl, label_map.json, fold_<k> lists; the audio stays in OUT_DIR)",
    )
    p.set_defaults(func=_make_demo_corpus)


def _pool_audio(args: argparse.Namespace) -> None:
    from fesa.corpora.pool import pool_audio

    info = pool_audio(Path(args.manifest_dir), ints(args.folds, "--folds"), Path(args.out))
    print(f"wrote {args.out}/train.tsv ({info['train']} utterances) and valid.tsv ({info['valid']}): audio only, no label")


def _add_pool_audio(sub: Subparsers) -> None:
    p = sub.add_parser(
        "pool-audio",
        help="every split's audio of prepared folds in one manifest folder, without labels (fesa run's protocol: authors)",
        description="Writes OUT/train.tsv (every utterance of the train, valid and test splits of --folds, once) and "
        "OUT/valid.tsv (the first fold's valid split), and no label file: what TAPT, k-means and CPT see under the authors' "
        "transductive protocol.",
    )
    p.add_argument("manifest_dir", help="prepared manifests (fold1, fold2, ...)")
    p.add_argument("--folds", required=True, help="comma-separated folds whose audio is pooled, e.g. 1,2,3,4,5")
    add_own_out(p, "folder to write train.tsv, valid.tsv and pool.json into", (POOL_INFO,))
    p.set_defaults(func=_pool_audio)


def _make_pretraining_corpus(args: argparse.Namespace) -> None:
    from fesa.corpora.demo import make_pretraining_corpus

    info = make_pretraining_corpus(
        Path(args.out_dir),
        speakers=args.speakers,
        utterances_per_speaker=args.utterances_per_speaker,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"wrote {info['utterances']} unlabelled utterances ({info['seconds'] / 60:.1f} min) of {info['speakers']} speakers "
        f"to {args.out_dir}: train.tsv, valid.tsv"
    )


def _add_make_pretraining_corpus(sub: Subparsers) -> None:
    p = sub.add_parser(
        "make-pretraining-corpus",
        help="write unlabelled synthetic speech of speakers outside every session, to pretrain the demo's source model",
        description="The demo's stand-in for LibriSpeech: the demo synthesiser with speakers that belong to no session "
        "and a prosody drawn at random for every phrase, so it varies as speech does but carries no emotion label. "
        "Writes OUT_DIR/{train,valid}.tsv (fairseq manifests) and the wavs.",
    )
    p.add_argument("out_dir", type=output_path, help="folder to create (it must not exist or be empty, unless --overwrite)")
    add_options(p, PretrainingCorpusOptions, ("speakers", "utterances_per_speaker", "seed"))
    add_overwrite(p, "replace a corpus this command wrote at OUT_DIR (swapped in only once complete; any other folder is refused)")
    p.set_defaults(func=_make_pretraining_corpus)


def _convert_segments(args: argparse.Namespace) -> None:
    from fesa.inference.references import convert_references, write_references

    data = convert_references(
        Path(args.source), args.format, Path(args.manifest) if args.manifest else None, Path(args.audio_root) if args.audio_root else None
    )
    write_references(data, Path(args.out))
    print(f"{len(data)} utterances, {sum(len(d['emotion']) for d in data.values())} events: wrote {args.out}")


def _add_convert_segments(sub: Subparsers) -> None:
    p = sub.add_parser("convert-segments", help="true emotion segments (ZED json, the demo corpus, a plain tsv) -> fesa eder's layout")
    p.add_argument("source", help="ZED's annotation json, a demo corpus (or its fesa_demo_segments.tsv), or a tsv of utt_id start end emotion")
    add_out(p, "the reference json to write")
    p.add_argument("--format", choices=SEGMENT_FORMATS, default="auto", help="default: from the file's name")
    p.add_argument("--manifest", help="tsv format: a fairseq manifest giving each utterance's wav and duration")
    p.add_argument("--audio-root", help="tsv format: wavs found under this folder by name; zed: replaces {data_root}")
    p.set_defaults(func=_convert_segments)
