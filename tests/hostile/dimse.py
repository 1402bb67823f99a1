"""DIMSE by hand for hostile peers: any command on any context ID, and the answers read back.

A hostile peer chooses every byte, so these helpers check nothing: they encode what
the test asks for (a C-FIND on the Verification context, a C-STORE of a SOP class
nobody negotiated) and decode whatever the node answers, PDU by PDU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from dicomtls.dimse.command import CommandSet, Tag, command_field, encode_command, number
from dicomtls.dimse.datasets import decode_dataset, encode_dataset
from dicomtls.dimse.pdv import CommandReceived, MessageAssembler
from dicomtls.ul.pdu import PDV, Abort, PDataTF

from .peers import DicomPeer

EXPLICIT = "1.2.840.10008.1.2.1"
#: Data set fragments per PDV: small, so a large data set spans several PDUs.
_FRAGMENT = 16 << 10


def message_pdus(context_id: int, command: CommandSet, dataset: bytes | None = None) -> bytes:
    """A whole DIMSE message as P-DATA-TF PDUs, on ``context_id`` whatever was negotiated."""
    pdus = [PDataTF((PDV(context_id, 0x03, encode_command(command)),)).encode()]
    if dataset is not None:
        chunks = [dataset[i : i + _FRAGMENT] for i in range(0, len(dataset), _FRAGMENT)] or [b""]
        for index, chunk in enumerate(chunks):
            last = 0x02 if index == len(chunks) - 1 else 0x00
            pdus.append(PDataTF((PDV(context_id, last, chunk),)).encode())
    return b"".join(pdus)


def identifier(syntax: str = EXPLICIT, **values: str) -> bytes:
    dataset = Dataset()
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    return encode_dataset(dataset, syntax)


@dataclass
class Answer:
    """One message the node sent: its command and data set (decoded if small)."""

    context_id: int
    command: CommandSet
    dataset: bytes = b""

    @property
    def status(self) -> int:
        return number(self.command, Tag.Status)

    @property
    def field(self) -> int:
        return number(self.command, Tag.CommandField)

    def decoded(self, syntax: str = EXPLICIT) -> Dataset:
        return decode_dataset(self.dataset, syntax)


@dataclass
class Conversation:
    """The node's side of a raw association, message by message."""

    peer: DicomPeer
    assembler: MessageAssembler = field(default_factory=MessageAssembler)
    aborted: Abort | None = None

    def send(self, context_id: int, command: CommandSet, dataset: bytes | None = None) -> None:
        self.peer.send(message_pdus(context_id, command, dataset))

    def next_message(self) -> Answer | None:
        """The node's next whole message; None once it aborts or closes (``aborted`` says)."""
        answer: Answer | None = None
        while True:
            pdu = self.peer.next_pdu()
            if isinstance(pdu, Abort):
                self.aborted = pdu
                return None
            if not isinstance(pdu, PDataTF):
                return None
            for item in self.assembler.feed(pdu.pdvs):
                if isinstance(item, CommandReceived):
                    command_field(item.command)
                    answer = Answer(item.context_id, item.command)
                    if not item.expects_dataset:
                        return answer
                else:
                    assert answer is not None
                    answer.dataset += bytes(item.data)
                    if item.last:
                        return answer

    def until_final(self) -> list[Answer]:
        """Messages up to the first that is not a pending response (or the end)."""
        answers = []
        while (answer := self.next_message()) is not None:
            answers.append(answer)
            if answer.field & 0x8000 and answer.status not in (0xFF00, 0xFF01):
                break
        return answers
