"""Typed configuration: strict attrs/cattrs structuring, YAML + overrides, schedules."""
