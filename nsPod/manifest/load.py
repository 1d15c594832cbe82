"""The YAML boundary: manifest text -> plain data (JSON's values only), and plain data -> YAML.

The only importer of yaml, and lazily: plan, state and the monitor import the manifest package
and must not pay for a YAML parser.
"""
import re

from nsPod.errors import SpecError
from nsPod.manifest.check import join_path
from nsPod.manifest.syntax import q


# The YAML a manifest may use: JSON's values and nothing else, in budgets no manifest comes
# near. The API server reads YAML as JSON (sigs.k8s.io/yaml): a tag beyond JSON's types
# (!!binary, !!set, !!timestamp, !!python/...) cannot reach it, and an alias is copied
# wherever it is used, so a few lines of anchors can stand for gigabytes ("billion laughs").
MANIFEST_MAX_BYTES = 4 * 1024 * 1024   # the API server refuses requests over 3 MiB
_ALIAS_BUDGET = 10_000                 # nodes copied by aliases, over a whole document
_DEPTH_MAX = 100                       # a Pod is about 10 levels deep
_INT_DIGITS_MAX = 100                  # an int64 has 19 digits
_YAML = "tag:yaml.org,2002:"
_JSON_TAGS = frozenset(_YAML + t for t in ("str", "int", "float", "bool", "null", "seq",
                                             "map", "merge"))
# YAML 1.1's implicit types as PyYAML and kubectl's go-yaml read them (yes/no/on/off are
# booleans there too), but no timestamps (text to the API server), no sexagesimal numbers
# (12:30 is text to go-yaml) and no '=' value type; every pattern matches only what converts.
_RESOLVERS = (
    ("bool", r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
     "yYnNtTfFoO"),
    ("int", r"[-+]?0b_*[01][01_]*|[-+]?0_*[0-7][0-7_]*|[-+]?(?:0|[1-9][0-9_]*)"
            r"|[-+]?0x_*[0-9a-fA-F][0-9a-fA-F_]*", "-+0123456789"),
    ("float", r"[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?=_*[0-9])[0-9_]+"
              r"(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", "-+.0123456789"),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("merge", r"<<", "<"),
)


def load_yaml(text, source):
    """(the non-empty documents, duplicate-key problems); SpecError for a syntax error and for
    anything beyond JSON: other tags, alias bombs, deep nesting, numbers no API takes."""
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        # A repeated key is silently "last wins" in PyYAML; the API server refuses it, and it
        # is usually a pasted block (two `command:`), so it is reported.
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: super() reports it
                if duplicate:
                    mark = key_node.start_mark
                    self.duplicates.append(f"{source}: line {mark.line + 1}, column "
                                           f"{mark.column + 1}: duplicate key {q(key)}")
            return super().construct_mapping(node, deep)

        def construct_object(self, node, deep=False):
            # An explicit !!int/!!bool/!!float on text that is none ("!!bool maybe") makes
            # PyYAML's constructors raise whatever Python raises: one line naming the place.
            try:
                return super().construct_object(node, deep)
            except yaml.YAMLError:
                raise
            except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
                raise ConstructorError(None, None, f"{q(node.value)} is not a valid "
                                       f"{_tag_name(node.tag)}", node.start_mark) from None

    def construct_int(loader, node):
        digits = node.value.replace("_", "")
        if len(digits) > _INT_DIGITS_MAX:
            raise ConstructorError(None, None, f"a number of {len(digits)} digits is too large "
                                   "(no field takes more than 19)", node.start_mark)
        return yaml.SafeLoader.construct_yaml_int(loader, node)

    def construct_float(loader, node):
        value = yaml.SafeLoader.construct_yaml_float(loader, node)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConstructorError(None, None, f"{q(node.value)} is not a number JSON can "
                                   "hold (no infinities, no NaN)", node.start_mark)
        return value

    Loader.add_constructor(_YAML + "int", construct_int)
    Loader.add_constructor(_YAML + "float", construct_float)
    Loader.yaml_implicit_resolvers = {}
    for tag, pattern, firsts in _RESOLVERS:
        Loader.add_implicit_resolver(_YAML + tag, re.compile(f"^(?:{pattern})$"), list(firsts))
    loader = Loader(text)
    loader.duplicates = []
    documents = []
    number = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            # numbered as load_pods numbers them: empty documents do not count
            number += not (isinstance(node, yaml.ScalarNode) and node.tag == _YAML + "null")
            _check_nodes(node, yaml, loader, lambda mark: (
                f"{source}: {'' if number == 1 else f'document {number}, '}"
                f"line {mark.line + 1}, column {mark.column + 1}: "))
            document = loader.construct_document(node)
            if document is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = e.problem or e.context or "not valid YAML"
        raise SpecError([f"{source}: {where}{problem}"]) from None
    except yaml.YAMLError as e:
        raise SpecError([f"{source}: " + " ".join(str(e).split())]) from None
    except RecursionError:
        raise SpecError([f"{source}: nested too deeply"]) from None
    finally:
        loader.dispose()
    return documents, loader.duplicates


def _tag_name(tag):
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


def _check_nodes(root, yaml, loader, where):
    """SpecError (naming the line and field) for a tag beyond JSON, a tag on the wrong kind of
    node, a scalar its tag cannot read (!!int x), a NUL character, nesting beyond _DEPTH_MAX,
    a recursive alias, or aliases that copy more than _ALIAS_BUDGET nodes. Walks each distinct
    node once, without recursion: the sizes of an alias bomb are computed, never built."""
    scalar_node, sequence_node = yaml.ScalarNode, yaml.SequenceNode
    str_tag, seq_tag, map_tag = _YAML + "str", _YAML + "seq", _YAML + "map"
    plain_tags = _JSON_TAGS - {seq_tag, map_tag}

    def fail(node, trail, problem):
        # trail: (key or index, parent trail) links, made into a field path only here
        parts = []
        while trail is not None:
            part, trail = trail
            parts.append(part)
        field = ""
        for part in reversed(parts):
            field = f"{field}[{part}]" if isinstance(part, int) else join_path(field, part)
        if len(field) > 100:
            field = field[:97] + "..."
        mark = node.start_mark
        raise SpecError([f"{where(mark)}{field}: {problem}" if field else
                         f"{where(mark)}{problem}"])

    def check_scalar(node, trail):
        if node.tag not in plain_tags:
            fail(node, trail, _tag_problem(node.tag, "a scalar"))
        if "\x00" in node.value:
            fail(node, trail, "contains a NUL character")
        if node.tag != str_tag and node.tag != _YAML + "merge":
            try:
                loader.construct_object(node)   # cached: construct_document reuses it
            except yaml.MarkedYAMLError as e:
                fail(node, trail, e.problem)

    size, height, text = {}, {}, {}
    active = set()
    copied = copied_text = 0
    stack = [(root, None, 1, False)]
    while stack:
        node, trail, depth, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node, sequence_node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max(height[id(c)] for c in children) if children else 1
            text[key] = sum(text[id(c)] for c in children)
            continue
        if key in size:
            copied += size[key]
            copied_text += text[key]
            if copied > _ALIAS_BUDGET:
                fail(node, trail, f"aliases copy more than {_ALIAS_BUDGET} nodes into the "
                                  "document (an alias bomb?)")
            if copied_text > MANIFEST_MAX_BYTES:
                fail(node, trail, f"aliases copy more than {MANIFEST_MAX_BYTES >> 20} MiB of "
                                  "text into the document (an alias bomb?)")
            if depth - 1 + height[key] > _DEPTH_MAX:
                fail(node, trail, f"nested more than {_DEPTH_MAX} levels deep")
            continue
        if depth > _DEPTH_MAX:
            fail(node, trail, f"nested more than {_DEPTH_MAX} levels deep")
        if type(node) is scalar_node:
            check_scalar(node, trail)
            size[key] = height[key] = 1
            text[key] = len(node.value)
            continue
        if key in active:
            fail(node, trail, "an alias inside the node it refers to (a recursive alias)")
        if type(node) is sequence_node:
            if node.tag != seq_tag:
                fail(node, trail, _tag_problem(node.tag, "a list"))
            pushed = [(child, (i, trail), depth + 1, False) for i, child in enumerate(node.value)]
        else:
            if node.tag != map_tag:
                fail(node, trail, _tag_problem(node.tag, "a mapping"))
            pushed = []
            for k, v in node.value:
                name = k.value if type(k) is scalar_node else "<key>"
                pushed.append((k, trail, depth + 1, False))
                pushed.append((v, (name, trail), depth + 1, False))
        active.add(key)
        stack.append((node, trail, depth, True))
        pushed.reverse()
        stack.extend(pushed)


def _children(node, sequence_node):
    if type(node) is sequence_node:
        return node.value
    return [n for pair in node.value for n in pair]


def _tag_problem(tag, kind):
    if tag not in _JSON_TAGS:
        return (f"tag {_tag_name(tag)} is not allowed: a manifest holds only JSON values "
                "(text, numbers, true/false, null, lists, mappings)")
    return f"tag {_tag_name(tag)} does not fit {kind}"


def dump_yaml(data):
    """YAML text for plain data (dicts, lists, strings, numbers), keys in their given order."""
    import yaml
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)
