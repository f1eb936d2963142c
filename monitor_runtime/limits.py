"""Limits shared by the runtime and the spec that validates against them.

Kept in a module with no heavy imports, so the spec (read by every CLI command) can check a window
against them without loading the window classes and their statistics.
"""

#: A bounded storage keeps one summary per pane; more panes than this per window means the step and size
#: share too small a divisor to be worth summarising pane by pane.
MAX_PANES_PER_WINDOW = 1000
