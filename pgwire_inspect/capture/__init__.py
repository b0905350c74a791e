"""Where frames come from: capture files, live sniffing, link layers down to TCP.

Public names:

- :class:`Frame`, :class:`TcpSegment` and the ``TCP_*`` flag bits: the data model.
- :func:`open_capture` / :class:`CaptureFile`: read pcap and pcapng files.
- :func:`decode_frame`: link layer, IPv4/IPv6 and TCP headers to a segment.
- :func:`dissect_headers` / :class:`HeaderField`: every header field with its byte span.
- :class:`LiveCapture`: capture the traffic to and from one server on this machine.
- :func:`write_pcap`: save frames as a pcap (or pcapng) file.
- :func:`read_hexdump` / :func:`looks_like_hexdump`: frames from hex dump text.
- :class:`FragmentReassembler`: fragmented IPv4/IPv6 datagrams back into whole frames.
- :class:`RelayCapture`: record a server's traffic through a TCP relay, without raw sockets.

This package imports scapy, the standard library and
:mod:`pgwire_inspect.errors` only.
"""

from __future__ import annotations

from pgwire_inspect.capture._model import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    Frame,
    TcpSegment,
)
from pgwire_inspect.capture.dissect import HeaderField, dissect_headers, tcp_flag_names
from pgwire_inspect.capture.files import CaptureFile, open_capture
from pgwire_inspect.capture.fragments import FragmentReassembler
from pgwire_inspect.capture.hexdump import looks_like_hexdump, read_hexdump
from pgwire_inspect.capture.links import LINKTYPE_NAMES, decode_frame
from pgwire_inspect.capture.relay import RelayCapture
from pgwire_inspect.capture.sniff import LiveCapture
from pgwire_inspect.capture.writer import write_pcap

__all__ = [
    "LINKTYPE_NAMES",
    "TCP_ACK",
    "TCP_FIN",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "CaptureFile",
    "FragmentReassembler",
    "Frame",
    "HeaderField",
    "LiveCapture",
    "RelayCapture",
    "TcpSegment",
    "decode_frame",
    "dissect_headers",
    "looks_like_hexdump",
    "open_capture",
    "read_hexdump",
    "tcp_flag_names",
    "write_pcap",
]
