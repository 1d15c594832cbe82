"""What a lab is: a title, a short text (what you will see and why it matters, naming the
kernel interfaces shown), the observations it checks, and its steps (a function of a
Session, runner.py, that runs the real nspod CLI and reads the kernel)."""
import dataclasses
import typing

# A lab's text must fit on one terminal page.
TEXT_LINES_MAX = 60


@dataclasses.dataclass(frozen=True)
class Lab:
    number: int
    name: str                       # `nspod lab run NAME`; also the prefix of its pod names
    title: str
    text: str                       # under a page; names every one of `interfaces`
    interfaces: tuple               # the kernel interfaces the lab shows, as the text names them
    observations: dict              # key -> what the student should see (each one is checked)
    steps: typing.Callable          # steps(session): commands, kernel reads, checks
    needs: tuple = ()               # host programs the lab runs (checked before it starts)

    def problems(self):
        """What is wrong with this lab's form (the unit tests and the runner both ask)."""
        found = []
        lines = self.text.strip("\n").splitlines()
        if len(lines) > TEXT_LINES_MAX:
            found.append(f"lab {self.name}: text is {len(lines)} lines (at most {TEXT_LINES_MAX})")
        for interface in self.interfaces:
            if interface not in self.text:
                found.append(f"lab {self.name}: the text does not name {interface}")
        if not self.interfaces:
            found.append(f"lab {self.name}: names no kernel interface")
        if not self.observations:
            found.append(f"lab {self.name}: has no observation to check")
        return found
