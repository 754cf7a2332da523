"""Tool retrieval: BM25 over a tool's name words, description and arguments; deterministic ties."""

from __future__ import annotations

from typing import Any

import pytest

from edgecrew.domain.messages import ToolDefinition
from edgecrew.tools.base import spec_from_function
from edgecrew.tools.retrieval import rank, rank_tools, tokens, tool_text


def _tool(name: str, description: str, **arguments: str) -> ToolDefinition:
    properties: dict[str, Any] = {arg: {"type": "string", "description": about} for arg, about in arguments.items()}
    return ToolDefinition(name, description, {"type": "object", "properties": properties})


TOOLS = [
    _tool("get_weather", "Current weather and forecast for a city.", city="The city name.", units="celsius or F"),
    _tool("calculate", "Evaluate an arithmetic expression.", expression="For example 2 * (3 + 4)."),
    _tool("read_file", "Read a text file from the workspace.", path="Path inside the workspace."),
    _tool("write_file", "Write text to a file in the workspace.", path="Where to write.", content="The text."),
    _tool("web_search", "Search the web.", query="What to look for.", max_results="How many results."),
    _tool("sendEmail", "Send an email message.", to="Recipient address.", subject="Subject line.", body="Text."),
    _tool("convert_units", "Convert a quantity from one unit to another.", value="Amount.", from_unit="Unit."),
    _tool("get_stock_price", "Latest price of a share by its ticker symbol.", symbol="Ticker, like AAPL."),
    _tool("translate", "Translate text into another language.", text="Text.", target_language="Language."),
    _tool("get_directions", "Route between two places.", origin="Start.", destination="End.", mode="driving"),
]


def names(ranked: list[Any]) -> list[str]:
    return [r.item.name for r in ranked]


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("What's the weather like in Paris tomorrow?", "get_weather"),
        ("Email bob@example.com with the subject 'Lunch'", "sendEmail"),
        ("Evaluate the expression 2 * (3 + 4)", "calculate"),
        ("How much is one share of AAPL? Check the ticker.", "get_stock_price"),
        ("Convert 5 miles to kilometers, from one unit to another", "convert_units"),
        ("Translate 'good morning' into Spanish", "translate"),
        ("Directions from Boston to New York, driving", "get_directions"),
        ("Search the web for hiking trails near Denver", "web_search"),
    ],
)
def test_the_tool_a_request_is_about_ranks_first(query: str, best: str) -> None:
    ranked = rank_tools(query, TOOLS, k=3)
    assert names(ranked)[0] == best
    assert len(ranked) == 3
    assert ranked[0].score > ranked[1].score >= ranked[2].score >= 0
    assert TOOLS[ranked[0].index] is ranked[0].item


def test_read_and_write_are_told_apart_by_their_words() -> None:
    assert names(rank_tools("read the text file report.md", TOOLS, k=2)) == ["read_file", "write_file"]
    assert names(rank_tools("write text to the file todo.txt", TOOLS, k=2)) == ["write_file", "read_file"]


def test_k_larger_than_the_list_returns_every_tool_ranked() -> None:
    ranked = rank_tools("weather in Oslo", TOOLS, k=50)
    assert sorted(names(ranked)) == sorted(t.name for t in TOOLS)
    assert names(ranked)[0] == "get_weather"
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)


def test_an_empty_or_unrelated_query_keeps_the_original_order() -> None:
    for query in ("", "   ", "the of and", "zzyzx qwxl"):
        ranked = rank_tools(query, TOOLS, k=4)
        assert names(ranked) == [t.name for t in TOOLS[:4]]
        assert {r.score for r in ranked} == {0.0}
        assert [r.index for r in ranked] == [0, 1, 2, 3]


def test_ties_keep_the_original_order() -> None:
    twins = [_tool("alpha", "Send a fax."), _tool("beta", "Send a fax."), _tool("gamma", "Send a fax.")]
    assert names(rank_tools("send a fax", twins, k=3)) == ["alpha", "beta", "gamma"]
    assert names(rank_tools("send a fax", list(reversed(twins)), k=3)) == ["gamma", "beta", "alpha"]
    # A tie below a clear winner still keeps the list's order.
    mixed = [_tool("one", "Send a fax."), _tool("fax_sender", "Send a fax."), _tool("two", "Send a fax.")]
    assert names(rank_tools("fax sender", mixed, k=3)) == ["fax_sender", "one", "two"]


def test_edge_cases() -> None:
    assert rank_tools("anything", [], k=3) == []
    assert rank_tools("weather", TOOLS, k=0) == []
    with pytest.raises(ValueError, match="k must be >= 0"):
        rank_tools("weather", TOOLS, k=-1)
    # A tool with no words at all (an odd name, no description) ranks, last.
    odd = [_tool("__", ""), _tool("get_weather", "Weather for a city.")]
    assert names(rank_tools("weather", odd, k=2)) == ["get_weather", "__"]
    assert names(rank_tools("weather", odd[:1], k=2)) == ["__"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("get_weather", ["weather"]),
        ("math.hypot", ["math", "hypot"]),
        ("send-email", ["send", "email"]),
        ("sendEmail", ["send", "email"]),
        ("SendEmailNow", ["send", "email", "now"]),
        ("getHTTPResponse", ["http", "response"]),
        ("parse_JSONFile v2", ["parse", "json", "file", "v", "2"]),
        ("sha256sum", ["sha", "256", "sum"]),
        ("What is the price of a share?", ["price", "share"]),
        ("", []),
    ],
)
def test_tokens_split_snake_case_camel_case_and_punctuation(text: str, words: list[str]) -> None:
    assert tokens(text) == words


def test_snake_and_camel_names_match_plain_words() -> None:
    tools = [_tool("fetchUserProfile", "Profile data."), _tool("delete_user_account", "Remove an account.")]
    assert names(rank_tools("fetch the user's profile", tools, k=1)) == ["fetchUserProfile"]
    assert names(rank_tools("delete my account", tools, k=1)) == ["delete_user_account"]


def test_argument_names_and_descriptions_count() -> None:
    nested = ToolDefinition(
        "lookup",
        "Look something up.",
        {
            "type": "object",
            "properties": {
                "filters": {"type": "array", "items": {"type": "object", "properties": {"isbn": {"type": "string"}}}}
            },
        },
    )
    plain = _tool("query", "Look something up.", term="A word.")
    assert names(rank_tools("find by isbn", [plain, nested], k=2)) == ["lookup", "query"]
    assert "isbn" in tokens(tool_text(nested))


def test_tool_specs_rank_like_their_definitions() -> None:
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return city

    def calculate(expression: str) -> float:
        """Evaluate an arithmetic expression."""
        return 0.0

    specs = [spec_from_function(calculate), spec_from_function(get_weather)]
    ranked = rank_tools("weather in Rome", specs, k=1)
    assert ranked[0].item is specs[1]
    definitions = [s.definition() for s in specs]
    assert tool_text(specs[1]) == tool_text(definitions[1])
    assert rank_tools("weather in Rome", definitions, k=2)[0].score == ranked[0].score


def test_rank_takes_any_item_with_a_text_function() -> None:
    docs = ["bake bread at home", "fix a flat bicycle tyre", "bread and butter pudding"]
    ranked = rank("how to fix a bicycle", docs, k=2, text=str)
    assert ranked[0].item == "fix a flat bicycle tyre"
    assert [r.index for r in rank("bread", docs, k=3, text=str)] == [0, 2, 1]
