"""Request path normalisation, PathPrefix matching and ReplacePrefixMatch (rauta.model.paths)."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rauta.model.paths import normalize_path, prefix_matches, replace_prefix

# --- normalize_path: canonical forms ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/abc", "/abc"),
        ("/abc/", "/abc/"),
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2E/admin", "/admin"),
        ("/public/.%2e/admin", "/admin"),
        ("//a///b", "/a/b"),
        ("/a/./b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/../", "/a/"),
        ("/..", "/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/a/../../b", "/b"),
        ("/.", "/"),
        ("/./", "/"),
        ("/a/.../b", "/a/.../b"),
        ("/a/.hidden", "/a/.hidden"),
        ("/a/..b/c", "/a/..b/c"),
        ("/%7Euser", "/~user"),
        ("/%41%62%63", "/Abc"),
        ("/a%2db%5Fc", "/a-b_c"),
        ("/a%3ab", "/a%3Ab"),
        ("/a%3Ab", "/a%3Ab"),
        ("/%25", "/%25"),
        ("/%252e%252e/x", "/%252e%252e/x"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/a%3Bb=c/d", "/a%3Bb=c/d"),
        ("/a%23b", "/a%23b"),
        ("/ABC", "/ABC"),
    ],
)
def test_normalize_path(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


def test_dotdot_public_admin_normalizes_to_admin() -> None:
    assert normalize_path("/public/../admin") == "/admin"


def test_encoded_dotdot_public_2e2e_admin_normalizes_to_admin() -> None:
    assert normalize_path("/public/%2e%2e/admin") == "/admin"


def test_duplicate_slashes_merged_a_b() -> None:
    assert normalize_path("//a///b") == "/a/b"


def test_dot_segment_removed_trailing_slash_kept() -> None:
    assert normalize_path("/a/./b/") == "/a/b/"


def test_never_climbs_above_root() -> None:
    assert normalize_path("/../../..") == "/"


def test_no_double_decoding_of_percent_25() -> None:
    assert normalize_path("/%252e%252e/admin") == "/%252e%252e/admin"


# --- normalize_path: rejections -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "*",
        "http://example.com/a",
        "/a\x00b",
        "/a\rb",
        "/a\nb",
        "/a\tb",
        "/a\x7fb",
        "/a%00b",
        "/a%",
        "/a%2",
        "/a%zz",
        "/a%g1",
        "/a%%41",
        "/a%2Fb",
        "/a%2fb",
        "/public%2F..%2Fadmin",
        "/a%5Cb",
        "/a%5cb",
        "/a\\b",
        "/..\\admin",
        "/admin#x",
        "/#/../admin",
        "/#",
        "/a/b#",
        "/admin;jsessionid=x",
        "/a;b=c/d",
        "/;",
        "/public/..;/admin",
        "/public/.;/admin",
    ],
)
def test_normalize_path_rejects(raw: str) -> None:
    assert normalize_path(raw) is None


def test_encoded_slash_2f_is_rejected_not_decoded() -> None:
    assert normalize_path("/public%2F..%2Fadmin") is None


def test_percent_encoded_nul_is_rejected() -> None:
    assert normalize_path("/a%00") is None


def test_path_not_starting_with_slash_is_rejected() -> None:
    assert normalize_path("a/b") is None


def test_fragment_is_rejected_not_routed_to_root_or_admin() -> None:
    """Issue 13: ``/admin#x`` went to the ``/`` backend, ``/#/../admin`` became ``/admin``."""
    assert normalize_path("/admin#x") is None
    assert normalize_path("/#/../admin") is None


def test_path_parameters_are_rejected() -> None:
    """Issue 13: ``/admin;jsessionid=x`` would be ``/admin`` to Tomcat and Spring."""
    assert normalize_path("/admin;jsessionid=x") is None
    assert normalize_path("/admin/;x") is None


def test_escaped_semicolon_and_hash_stay_escaped() -> None:
    assert normalize_path("/admin%3bx") == "/admin%3Bx"
    assert normalize_path("/admin%23x") == "/admin%23x"


@given(st.text(max_size=20), st.sampled_from(["#", ";"]), st.text(max_size=20))
def test_any_raw_hash_or_semicolon_is_rejected(before: str, char: str, after: str) -> None:
    assert normalize_path("/" + before + char + after) is None


# --- normalize_path: properties -----------------------------------------------------------

_PATH_ALPHABET = st.sampled_from(
    [
        "/",
        "/",
        ".",
        "..",
        "a",
        "b",
        "Z",
        "~",
        "-",
        "_",
        "%2e",
        "%2E",
        "%41",
        "%7e",
        "%3a",
        "%25",
        "%20",
        "%C3%A9",
        ";",
        "=",
        "@",
        ":",
    ]
)
_paths = st.lists(_PATH_ALPHABET, max_size=30).map(lambda parts: "/" + "".join(parts))


@given(_paths)
@example("/public/%2e%2e/admin")
@example("//a///b/./../c/..")
@example("/%2e%2e%2f")
def test_normalize_path_is_idempotent_and_canonical(raw: str) -> None:
    out = normalize_path(raw)
    if out is None:
        return
    assert out.startswith("/")
    assert "/../" not in out
    assert "/./" not in out
    assert "//" not in out
    assert not out.endswith("/..")
    assert not out.endswith("/.")
    assert normalize_path(out) == out


@given(st.text(max_size=40))
def test_normalize_path_arbitrary_text_never_crashes_and_is_idempotent(raw: str) -> None:
    out = normalize_path("/" + raw)
    if out is not None:
        assert out.startswith("/")
        assert "//" not in out and "/./" not in out and "/../" not in out
        assert normalize_path(out) == out


@given(_paths)
def test_normalized_path_has_no_dot_segments_and_keeps_unreserved_decoded(raw: str) -> None:
    out = normalize_path(raw)
    if out is None:  # the alphabet has no forbidden escapes; only ";" (path parameters)
        assert ";" in raw, raw
        return
    assert all(seg not in (".", "..") for seg in out.split("/"))
    assert "%2E" not in out and "%41" not in out and "%7E" not in out
    assert "%3a" not in out  # remaining escapes are upper-cased


# --- prefix_matches -----------------------------------------------------------------------


def test_prefix_abc_matches_abc() -> None:
    assert prefix_matches("/abc", "/abc")


def test_prefix_abc_matches_abc_slash() -> None:
    assert prefix_matches("/abc", "/abc/")


def test_prefix_abc_matches_abc_def() -> None:
    assert prefix_matches("/abc", "/abc/def")


def test_prefix_abc_does_not_match_abcd() -> None:
    assert not prefix_matches("/abc", "/abcd")


def test_prefix_abc_trailing_slash_ignored() -> None:
    assert prefix_matches("/abc/", "/abc")
    assert prefix_matches("/abc/", "/abc/def")
    assert not prefix_matches("/abc/", "/abcd")


def test_prefix_root_matches_everything() -> None:
    for path in ("/", "/a", "/abc/def/", "/%3A"):
        assert prefix_matches("/", path)


def test_prefix_is_case_sensitive() -> None:
    assert not prefix_matches("/abc", "/ABC")


def test_prefix_multi_element() -> None:
    assert prefix_matches("/a/b", "/a/b/c")
    assert not prefix_matches("/a/b", "/a/bc")
    assert not prefix_matches("/a/b", "/a")


def test_dotdot_public_admin_never_matches_public_prefix() -> None:
    path = normalize_path("/public/../admin")
    assert path is not None
    assert not prefix_matches("/public", path)
    encoded = normalize_path("/public/%2e%2e/admin")
    assert encoded is not None
    assert not prefix_matches("/public", encoded)


# --- replace_prefix (Gateway API HTTPPathModifier ReplacePrefixMatch table) ---------------


@pytest.mark.parametrize(
    ("path", "prefix", "replacement", "expected"),
    [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
    ],
)
def test_replace_prefix_spec_table(path: str, prefix: str, replacement: str, expected: str) -> None:
    assert replace_prefix(path, prefix, replacement) == expected


def test_replace_prefix_foo_with_xyz_foo_bar_becomes_xyz_bar() -> None:
    assert replace_prefix("/foo/bar", "/foo", "/xyz") == "/xyz/bar"


def test_replace_prefix_foo_with_slash_foo_bar_becomes_bar() -> None:
    assert replace_prefix("/foo/bar", "/foo", "/") == "/bar"


def test_replace_prefix_foo_with_slash_foo_becomes_slash() -> None:
    assert replace_prefix("/foo", "/foo", "/") == "/"


def test_replace_prefix_root_prefix_prepends_replacement() -> None:
    assert replace_prefix("/foo/bar", "/", "/xyz") == "/xyz/foo/bar"
    assert replace_prefix("/foo/bar", "/", "/") == "/foo/bar"


def test_replace_prefix_multi_element() -> None:
    assert replace_prefix("/prefix/one/two", "/prefix/one", "/one") == "/one/two"
    assert replace_prefix("/strip-prefix/three", "/strip-prefix", "/") == "/three"


def test_replace_prefix_non_matching_path_unchanged() -> None:
    assert replace_prefix("/foobar", "/foo", "/xyz") == "/foobar"


def test_replace_prefix_relative_replacement_made_absolute() -> None:
    assert replace_prefix("/foo/bar", "/foo", "xyz") == "/xyz/bar"


def test_dot_segment_with_path_parameters_public_dotdot_semicolon_admin_is_rejected() -> None:
    """Tomcat/Jetty/Spring read "/public/..;/admin" as "/admin": never let it match /public."""
    assert normalize_path("/public/..;/admin") is None
    assert normalize_path("/public/.;jsessionid=1/x") is None
    assert normalize_path("/a/b..;c") is None  # any ";" (path parameters) is rejected
