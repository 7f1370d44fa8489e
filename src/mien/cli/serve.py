"""`mien serve`: the web page, REST API and webcam mode."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mien.cli.common import EXIT_USAGE, EXPRESSIONS_HELP, app, errors, load_rules_or_exit, require_extra


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on; anything beyond localhost needs --api-key."),
    port: int = typer.Option(8000, help="TCP port."),
    data_dir: Path = typer.Option(Path("mien-data"), "--data-dir", help="Folder for the job database and results."),
    database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the job database (default: SQLite in "
                                                          "--data-dir), e.g. postgresql+psycopg://user:pw@host/db."),
    api_key: Optional[str] = typer.Option(None, envvar="MIEN_API_KEY",
                                          help="Require this key (X-API-Key header); env MIEN_API_KEY."),
    max_upload_mb: float = typer.Option(50.0, help="Largest upload per file, MiB."),
    max_video_s: float = typer.Option(600.0, help="Longest accepted video, seconds."),
    retain_uploads: bool = typer.Option(False, help="Keep uploaded files after processing (default: delete)."),
    blur_faces: bool = typer.Option(False, help="Blur faces in annotated images and heatmaps (anonymised output)."),
    rate_limit: int = typer.Option(600, help="Requests per minute per API key or client address; 0 = no limit."),
    workers: int = typer.Option(1, min=1, help="Image pipelines kept loaded for concurrent requests (about 60 MB each beyond the first)."),
    trust_proxy: bool = typer.Option(False, "--trust-proxy", help="Take client addresses from X-Forwarded-For "
                                     "(only behind a reverse proxy that sets it; otherwise clients could dodge the rate limit)."),
    max_queued: int = typer.Option(50, min=1, help="Most jobs waiting at once; more are refused with 503 and Retry-After."),
    max_request_mb: float = typer.Option(512.0, min=1.0, help="Largest request body in MiB, whatever its files "
                                         "(the gate stops reading there, 413)."),
    max_pixels: float = typer.Option(40.0, help="Largest image accepted (uploads and webcam frames), megapixels, "
                                     "read from its header before decoding."),
    allowed_host: List[str] = typer.Option([], "--allowed-host", help="Another host name clients may use (the "
                                           "localhost names and --host are allowed; others are refused against "
                                           "DNS rebinding). Repeat for several."),
    expressions: Optional[Path] = typer.Option(None, "--expressions", help=EXPRESSIONS_HELP),
) -> None:
    """Serve the web page, REST API and webcam mode.

    Run `mien serve`, then open http://127.0.0.1:8000 (API docs at /docs)."""
    require_extra("serve", "fastapi", "uvicorn", "multipart", "sqlalchemy", "websockets")
    import uvicorn

    from mien.server.app import create_app
    from mien.server.settings import LOCAL_HOSTS, ServerSettings

    settings = ServerSettings(data_dir=data_dir, database_url=database_url, api_key=api_key,
                              max_upload_mb=max_upload_mb, max_video_s=max_video_s, retain_uploads=retain_uploads,
                              blur_faces=blur_faces, rate_limit=rate_limit, workers=workers,
                              listen_host=host, allowed_hosts=tuple(allowed_host),
                              max_pixels=int(max_pixels * 1_000_000), max_queued=max_queued, trust_proxy=trust_proxy,
                              max_request_mb=max_request_mb, rules=load_rules_or_exit(expressions))
    if host not in LOCAL_HOSTS and not settings.api_key:
        errors.print(f"refusing to listen on {host} without an API key: pass --api-key or set MIEN_API_KEY",
                     soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    errors.print(f"mien {'(API key required) ' if settings.api_key else ''}on http://{host}:{port} "
                 f"(data in {settings.data_dir})", highlight=False, soft_wrap=True)
    # Client addresses (rate limits) come from X-Forwarded-For only behind a proxy the user vouches for;
    # idle keep-alive connections close after 5 s; shutdown waits at most 3 s for open requests.
    from mien.server.timeouts import TimedH11Protocol

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", proxy_headers=False,
                timeout_keep_alive=5,
                timeout_graceful_shutdown=3, http=TimedH11Protocol)  # + slow-header and stalled-body timeouts
