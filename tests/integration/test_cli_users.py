"""``logstore users add|remove|list`` through click's CliRunner.

The group is invoked directly (``logstore_cli.users.users``), so these tests do not
depend on its registration in ``logstore_cli.main``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner, Result

from logstore.server.auth import load_users, new_authenticator
from logstore_cli.users import DEFAULT_USERS_FILE, users


def _run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(users, list(args), input=stdin, env=env)


def _one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in result.stderr, result.stderr


def _plain_ok(path: Path, name: str, password: str) -> bool:
    server = new_authenticator("PLAIN", load_users(path))
    try:
        server.step(f"\0{name}\0{password}".encode())
    except Exception:
        return False
    return server.done


def test_users_add_with_password_stdin_then_list(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"

    added = _run("add", "alice", "--users-file", str(path), "--password-stdin",
                 stdin="wonderland\n")
    _run("add", "bob", "--users-file", str(path), "--password-stdin", stdin="builder")
    listed = _run("list", "--users-file", str(path))

    assert added.exit_code == 0, added.output
    assert added.stdout == f"added user 'alice' to {path}\n"
    assert listed.exit_code == 0 and listed.stdout == "alice\nbob\n"
    assert _plain_ok(path, "alice", "wonderland")  # the newline is not part of it
    assert _plain_ok(path, "bob", "builder")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_users_add_prompts_twice_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"

    result = _run("add", "alice", "--users-file", str(path), stdin="s3cret\ns3cret\n")

    assert result.exit_code == 0, result.output
    assert "Password for alice" in result.output and "Repeat for confirmation" in result.output
    assert "s3cret" not in result.output
    assert _plain_ok(path, "alice", "s3cret")


def test_users_add_prompts_again_when_the_two_entries_differ(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"

    result = _run("add", "alice", "--users-file", str(path), stdin="one\ntwo\nthree\nthree\n")

    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert _plain_ok(path, "alice", "three") and not _plain_ok(path, "alice", "one")


def test_users_add_again_changes_the_password(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    _run("add", "alice", "--users-file", str(path), "--password-stdin", stdin="old")

    result = _run("add", "alice", "--users-file", str(path), "--password-stdin", stdin="new")

    assert result.stdout == f"changed the password of user 'alice' in {path}\n"
    assert _plain_ok(path, "alice", "new") and not _plain_ok(path, "alice", "old")


def test_users_add_iterations(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"

    result = _run("add", "alice", "--users-file", str(path), "--password-stdin",
                  "--iterations", "8192", stdin="pw")

    assert result.exit_code == 0
    credential = load_users(path).get("alice")
    assert credential is not None and credential.iterations == 8192


def test_users_add_refuses_iterations_out_of_kafkas_bounds(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"

    result = _run("add", "alice", "--users-file", str(path), "--password-stdin",
                  "--iterations", "1000", stdin="pw")

    assert result.exit_code == 2 and "4096" in result.stderr
    assert not path.exists()


def test_users_add_refuses_an_empty_password_or_name(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"

    no_password = _run("add", "alice", "--users-file", str(path), "--password-stdin", stdin="\n")
    no_name = _run("add", "", "--users-file", str(path), "--password-stdin", stdin="pw")

    _one_line_error(no_password, "no password")
    _one_line_error(no_name, "must not be empty")
    assert not path.exists()


def test_users_remove(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    _run("add", "alice", "--users-file", str(path), "--password-stdin", stdin="a")

    removed = _run("remove", "alice", "--users-file", str(path))
    again = _run("remove", "alice", "--users-file", str(path))

    assert removed.exit_code == 0 and removed.stdout == f"removed user 'alice' from {path}\n"
    _one_line_error(again, "no user 'alice'", "logstore users list")
    assert _run("list", "--users-file", str(path)).stdout == ""


def test_users_list_of_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = _run("list", "--users-file", str(tmp_path / "users.jsonl"))

    _one_line_error(result, "does not exist", "logstore users add")


def test_users_list_of_a_bad_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text('{"format": "logstore-users", "version": 1}\nnot json\n')

    _one_line_error(_run("list", "--users-file", str(path)), str(path), "line 2")
    _one_line_error(
        _run("add", "bob", "--users-file", str(path), "--password-stdin", stdin="b"), "line 2"
    )


def test_users_file_defaults_to_the_working_directory_or_the_environment(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _run("add", "alice", "--password-stdin", stdin="a")
    elsewhere = tmp_path / "other.jsonl"
    _run("add", "bob", "--password-stdin", stdin="b",
         env={"LOGSTORE_USERS_FILE": str(elsewhere)})

    assert load_users(tmp_path / DEFAULT_USERS_FILE).names() == ["alice"]
    assert load_users(elsewhere).names() == ["bob"]
