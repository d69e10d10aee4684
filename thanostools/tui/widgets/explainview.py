"""The Explain tab: the expression tree, filled in node by node as a worker evaluates each one."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from thanostools.tui.explain import ExplainNode, flatten

MAX_TEXT = 90


def _label(node: ExplainNode, summary: str | None) -> Text:
    text = node.text if len(node.text) <= MAX_TEXT else node.text[:MAX_TEXT - 1] + "…"
    label = Text(text, style="bold")
    label.append(f"  {node.what}", style="italic #c586c0")
    if summary is not None:
        label.append(f"  {summary}", style="#4fc1ff" if not summary.startswith("error") else "red")
    elif node.needs_eval:
        label.append("  …", style="dim")
    return label


class ExplainTree(Tree[int]):
    """Each sub-expression evaluated on its own at the evaluation time: series count and label cardinalities."""

    HELP = __doc__

    def __init__(self) -> None:
        super().__init__("run a query to see its expression tree", id="explain")
        self.nodes: list[ExplainNode] = []
        self._node_for: list[TreeNode[int]] = []
        self.summaries: dict[int, str] = {}

    def show(self, root: ExplainNode | None) -> None:
        self.clear()
        self.nodes = flatten(root) if root is not None else []
        self._node_for = []
        self.summaries = {}
        if root is None:
            self.root.set_label("run a query to see its expression tree")
            return
        index = {id(n): i for i, n in enumerate(self.nodes)}
        self.root.set_label(_label(root, None))
        self.root.data = 0
        self._node_for = [self.root] + [self.root] * (len(self.nodes) - 1)
        stack = [(root, self.root)]
        while stack:
            node, tree_node = stack.pop()
            for child in node.children:
                i = index[id(child)]
                sub = tree_node.add(_label(child, None), data=i, expand=True,
                                    allow_expand=bool(child.children))
                self._node_for[i] = sub
                stack.append((child, sub))
        self.root.expand_all()

    def set_summary(self, index: int, summary: str) -> None:
        if 0 <= index < len(self.nodes):
            self.summaries[index] = summary
            self._node_for[index].set_label(_label(self.nodes[index], summary))
