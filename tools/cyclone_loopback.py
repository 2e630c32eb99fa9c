"""Cyclone DDS discovery on this host for the interoperability helpers (cyclone_peer.py,
cyclone_params.py). Import before cyclonedds: unless CYCLONEDDS_URI is set, Cyclone stays on the
loopback interface without multicast and announces itself by unicast to localhost (participant
indices 0..19), so peers on this host are found whether or not an interface carries multicast (by
default Cyclone would pick the ethernet interface and rely on its multicast). Set CYCLONEDDS_URI
to reach other hosts."""

import os

CYCLONE_CONFIG = """<CycloneDDS><Domain Id="any">
  <General>
    <Interfaces><NetworkInterface name="lo"/></Interfaces>
    <AllowMulticast>false</AllowMulticast>
  </General>
  <Discovery>
    <ParticipantIndex>auto</ParticipantIndex>
    <MaxAutoParticipantIndex>19</MaxAutoParticipantIndex>
    <Peers><Peer address="localhost"/></Peers>
  </Discovery>
</Domain></CycloneDDS>"""

os.environ.setdefault("CYCLONEDDS_URI", CYCLONE_CONFIG)
