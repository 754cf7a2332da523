"""`edgecrew agents list|show`: the agent library (agents/*.yaml and the built-in agents) that teams
use by name (`use: NAME` in a team's agents, with the team's own fields on top)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgecrew.cli.common import ProjectOpt, console, guard
from edgecrew.errors import SpecError

agents_app = typer.Typer(
    help="The agent library: agents defined once (agents/*.yaml, or built in) and used by name in teams.",
    no_args_is_help=True,
)


def _catalog(project: Any) -> tuple[Any, Any]:
    from edgecrew.bootstrap import load_catalog
    from edgecrew.engine.runtime import catalog_of
    from edgecrew.settings import get_settings

    settings = get_settings()
    if project is not None:
        settings = settings.model_copy(update={"project": project})
    found, models, tools = load_catalog(settings)
    return found, catalog_of(models, tools, found.agent_docs(), found.agent_files())


@agents_app.command("list")
def list_agents(project: ProjectOpt = None) -> None:
    """Every library agent with its kind, model, tools and whether it is valid."""

    def body() -> None:
        found, catalog = _catalog(project)
        if not found.agents:
            console.print(
                "no library agents; define one in agents/NAME.yaml (name, then its fields) and use it in a "
                "team as `NAME: {use: NAME}`"
            )
            return
        table = Table("agent", "source", "kind", "model", "tools", "state")
        for name, source in sorted(found.agents.items()):
            try:
                agent = found.load_agent(name, catalog)
                model = agent.model if isinstance(agent.model, str) else f"tag {agent.model.tag}"
                tools = ", ".join(agent.tools) or (agent.tool or "")
                row = [agent.kind, model if agent.kind == "model" else "", tools, "[green]valid[/]"]
            except SpecError as exc:
                row = ["", "", "", f"[red]{len(exc.issues)} problem(s)[/]"]
            table.add_row(name, "built-in" if source.builtin else str(source.file), *row)
        console.print(table)

    guard(body)


@agents_app.command()
def show(
    name: Annotated[str, typer.Argument(help="A library agent's name (see `edgecrew agents list`).")],
    project: ProjectOpt = None,
) -> None:
    """A library agent's fields as teams get them, or every problem in its file with its line."""

    def body() -> None:
        found, catalog = _catalog(project)
        agent = found.load_agent(name, catalog)
        source = found.agents[name]
        console.print(f"agent [bold]{name}[/] ({'built-in' if source.builtin else source.file}) · {agent.kind} agent")
        console.print_json(json.dumps(agent.model_dump(mode="json", exclude_defaults=True), ensure_ascii=False))
        console.print(f"[dim]use it in a team: agents: {{ {escape(name)}: {{use: {escape(name)}}} }}[/]")

    guard(body)
