"""YAML specs → frozen domain objects, with errors that name file, line and fix."""

from edgecrew.specs.loader import Catalog, load_team, load_team_text, parse_yaml
from edgecrew.specs.project import Project, load_project

__all__ = ["Catalog", "Project", "load_project", "load_team", "load_team_text", "parse_yaml"]
