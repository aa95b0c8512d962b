"""The key import's CSV reading: bounded, UTF-8, API Gateway's header rules; hostile input is refused whole or
per row, never half-read."""

import pytest

from core.admin.key_import import MAX_IMPORT_BYTES, MAX_IMPORT_ROWS, read_table
from core.errors import InvalidRequest, PayloadTooLarge


def test_header_names_in_any_case_and_order_unknown_columns_dropped_a_bom_ignored() -> None:
    body = "\ufeffTier,EMAIL,Key,extra,Name\nfree,a@b.example,kkkkkkkkkkkkkkkkkkkkkk,x,A\n\nfree,c@d.example,k2,y,=B\n"

    rows = read_table(body.encode())

    assert rows == [
        (1, {"tier": "free", "email": "a@b.example", "key": "kkkkkkkkkkkkkkkkkkkkkk", "name": "A"}, None),
        (2, {"tier": "free", "email": "c@d.example", "key": "k2", "name": "=B"}, None),
    ]


def test_a_row_of_the_wrong_shape_or_with_a_huge_cell_is_refused_alone() -> None:
    body = "key,name,email,tier\na,b,c\n" + ",".join(["x" * 3000, "n", "e", "t"]) + "\nk,n,e,t\n"

    rows = read_table(body.encode())

    assert [(number, problem is not None) for number, _, problem in rows] == [(1, True), (2, True), (3, False)]


@pytest.mark.parametrize(
    "body",
    [
        b"key,name,email,tier\n\xff\xfe,n,e,t\n",  # not UTF-8
        b"key,name,email,tier\nk,n\x00,e,t\n",  # NUL
        b"name,email,tier\nn,e,t\n",  # no key column
        b"key,name,email,tier,Key\nk,n,e,t,k\n",  # a column twice
        b"key,name,email,tier\n",  # no rows
        b'key,name,email,tier\n"k,n,e,t\n',  # an unterminated quote
        ("key,name,email,tier\n" + "k,n,e,t\n" * (MAX_IMPORT_ROWS + 1)).encode(),
    ],
)
def test_a_body_that_cannot_be_read_as_a_whole_is_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        read_table(body)


def test_a_body_over_the_bound_is_413_before_it_is_decoded() -> None:
    with pytest.raises(PayloadTooLarge):
        read_table(b"key,name,email,tier\n" + b"x" * MAX_IMPORT_BYTES)
