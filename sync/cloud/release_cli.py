"""``teddy-cloud release keygen|build|publish`` and ``teddy-cloud fleet rollout ...``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from config.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``release`` and its sub-commands to the ``teddy-cloud`` parser."""
    release = commands.add_parser("release", help="signed over-the-air releases")
    sub = release.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    keygen = sub.add_parser("keygen", help="make the fleet's Ed25519 release key (PEM, 0600); "
                                           "prints the public key for update.public_key")
    keygen.add_argument("--out", required=True, type=Path, help="private key file to create")
    keygen.set_defaults(func=_keygen)
    build = sub.add_parser("build", help="build and sign a release from the working tree")
    build.add_argument("--version", required=True, help="version to stamp, e.g. 0.2.0")
    build.add_argument("--floor", help="minimum previous version bears accept afterwards "
                                       "(default: this version: no going back)")
    build.add_argument("--out", required=True, type=Path, help="empty output directory")
    build.add_argument("--source", type=Path, default=Path.cwd(),
                       help="project root (default: the current directory)")
    build.add_argument("--with-deps", action="store_true",
                       help="include every dependency wheel (a complete, offline release)")
    build.set_defaults(func=_build)
    publish = sub.add_parser("publish", help="copy a release into the store (content-addressed)"
                                             " and record it in PostgreSQL")
    publish.add_argument("release_dir", type=Path, help="directory made by release build")
    publish.add_argument("--store", type=Path, help="store directory (update.release_store)")
    publish.add_argument("--base-url", help="URL the store is served at (update.release_base_url)")
    publish.set_defaults(func=_publish)


def register_rollout(fleet_sub: argparse._SubParsersAction) -> None:
    """Add ``rollout`` to ``teddy-cloud fleet``."""
    rollout = fleet_sub.add_parser(
        "rollout", help="staged rollout: fleet rollout RELEASE --stages 1%%,10%%,50%%,100%% | "
                        "rollout status [ID] | rollout abort [ID]")
    rollout.add_argument("release", metavar="RELEASE|status|abort",
                         help="a published version or URL to roll out; or status, or abort")
    rollout.add_argument("rollout_id", nargs="?", type=int, metavar="ID",
                         help="status/abort: the rollout (default: the latest / running one)")
    rollout.add_argument("--stages", default="1%,10%,50%,100%",
                         help="cumulative shares of the fleet (default: 1%%,10%%,50%%,100%%)")
    rollout.add_argument("--pause-on-failures", type=int, default=1, metavar="N",
                         help="halt once N bears failed (default: 1)")
    rollout.add_argument("--stage-timeout", type=float, default=900.0, metavar="SECONDS",
                         help="a bear silent this long after the command counts as failed")
    rollout.add_argument("--json", action="store_true", help="status: as JSON")
    rollout.set_defaults(func=_rollout)


def _keygen(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.release import generate_key

    public = generate_key(args.out)
    print(f"release key written to {args.out} (mode 0600); give every bear:")
    print(f"TEDDY_UPDATE__PUBLIC_KEY={public}")
    return 0


def _build(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.release import build_release, load_signing_key

    key = load_signing_key(settings.update.signing_key_file)
    manifest = build_release(args.source, args.out, args.version, key, args.floor,
                             args.with_deps)
    print(f"built release {manifest.version} (floor {manifest.floor}) in {args.out}: "
          f"{len(manifest.files)} files, {manifest.total_size} bytes"
          f"{'' if manifest.complete else ', project wheel only'}")
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from config.errors import ConfigError
    from sync.cloud import db
    from sync.cloud.release import publish_release, record_release

    store = args.store or settings.update.release_store
    base_url = args.base_url or settings.update.release_base_url
    if store is None or base_url is None:
        raise ConfigError("publishing needs a store and its URL — pass --store and --base-url "
                          "or set update.release_store and update.release_base_url")
    url, manifest = publish_release(args.release_dir, store, base_url)
    digest = url.rstrip("/").rsplit("/", 1)[-1]
    with db.connect(settings.cloud) as conn:
        record_release(conn, manifest, url, digest)
    print(f"published release {manifest.version} at {url}")
    return 0


def _rollout(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import db
    from sync.cloud.release import release_url_for
    from sync.cloud.rollout import FleetDispatcher, Rollouts, parse_stages

    with db.connect(settings.cloud) as conn:
        rollouts = Rollouts(conn, progress=lambda line: print(line, flush=True))
        if args.release == "status":
            report = rollouts.status(args.rollout_id)
            print(json.dumps(report, indent=2) if args.json else _status_text(report))
            return 0
        if args.release == "abort":
            print(f"rollout {rollouts.abort(args.rollout_id)} aborted")
            return 0
        from sync.cloud.fleet import Fleet

        version, url = release_url_for(conn, args.release)
        rollout_id = rollouts.start(version, url, parse_stages(args.stages),
                                    args.pause_on_failures, args.stage_timeout)
        state = rollouts.run(rollout_id, FleetDispatcher(Fleet(settings, conn)))
    return 0 if state == "completed" else 1


def _status_text(report: dict) -> str:
    lines = [f"rollout {report['id']}: release {report['release']} {report['state']}"
             f"{' — ' + report['reason'] if report['reason'] else ''}"]
    for stage in report["stages"]:
        counts = ", ".join(f"{n} {o}" for o, n in sorted(stage["outcomes"].items())) or "-"
        lines.append(f"  stage {stage['stage']} ({stage['percent']:g}%): {counts}")
    for device_id, reason in report["failing"].items():
        lines.append(f"  failing {device_id}: {reason}")
    return "\n".join(lines)
