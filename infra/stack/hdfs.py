"""The embedded HDFS: one NameNode and one DataNode, started from Hadoop's Maven jars with `java`.

The same daemons `hdfs namenode` and `hdfs datanode` run, on 127.0.0.1 only, replication 1,
their metadata and blocks under $WARDEN_HOME/hdfs (formatted once, kept across restarts).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from infra.exceptions import ServiceError
from infra.probes import Health, State, http_get
from infra.settings import Settings
from infra.stack.process import ManagedProcess, require_free_port, run_java

_NAMENODE = "org.apache.hadoop.hdfs.server.namenode.NameNode"
_DATANODE = "org.apache.hadoop.hdfs.server.datanode.DataNode"
# Hadoop on Java 17 reflects into these JDK packages (what Hadoop's own scripts add, HADOOP-19310).
_JPMS_OPENS = [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in (
        "java.lang",
        "java.lang.reflect",
        "java.io",
        "java.net",
        "java.nio",
        "java.util",
        "java.util.concurrent",
        "java.util.zip",
        "sun.nio.ch",
        "sun.security.util",
        "sun.security.x509",
    )
]
_LOG4J = """\
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
# Per-request and metrics chatter.
log4j.logger.org.apache.hadoop.hdfs.StateChange=WARN
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
log4j.logger.org.apache.hadoop.metrics2=WARN
"""


def _site_xml(properties: dict[str, str]) -> str:
    body = "".join(
        f"  <property><name>{escape(name)}</name><value>{escape(value)}</value></property>\n"
        for name, value in properties.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


class HdfsCluster:
    """NameNode + DataNode as one service of the stack (`hdfs` in `warden up --service`)."""

    name = "hdfs"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "hdfs"
        self.namenode = ManagedProcess("hdfs-namenode", settings.home)
        self.datanode = ManagedProcess("hdfs-datanode", settings.home)

    @property
    def url(self) -> str:
        host, port = self.settings.hdfs_namenode
        return f"hdfs://{host}:{port} (web {self.settings.webhdfs_url})"

    def _ports(self) -> list[int]:
        s = self.settings
        return [
            s.hdfs_namenode[1],
            s.hdfs.http_port,
            s.hdfs.datanode_port,
            s.hdfs.datanode_http_port,
            s.hdfs.datanode_ipc_port,
        ]

    def _classpath(self, conf: Path) -> str:
        jars = self.settings.jars_dir / "hadoop"
        if not any(jars.glob("hadoop-hdfs-*.jar")):
            raise ServiceError(f"Hadoop jars not found in {jars}; run `make jvm` to fetch them with Maven")
        # The conf folder first: Hadoop finds core-site.xml and hdfs-site.xml on the classpath.
        return f"{conf}:{jars}/*"

    def _write_conf(self) -> Path:
        s = self.settings
        host, rpc_port = s.hdfs_namenode
        conf = self.dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "core-site.xml").write_text(
            _site_xml(
                {
                    "fs.defaultFS": f"hdfs://{host}:{rpc_port}",
                    "hadoop.tmp.dir": str(self.dir / "tmp"),
                    "hadoop.http.staticuser.user": s.hdfs.user,
                }
            )
        )
        (conf / "hdfs-site.xml").write_text(
            _site_xml(
                {
                    "dfs.replication": "1",
                    "dfs.namenode.name.dir": f"file://{self.dir / 'name'}",
                    "dfs.datanode.data.dir": f"file://{self.dir / 'data'}",
                    "dfs.namenode.rpc-address": f"{host}:{rpc_port}",
                    "dfs.namenode.http-address": f"{host}:{s.hdfs.http_port}",
                    "dfs.datanode.address": f"{host}:{s.hdfs.datanode_port}",
                    "dfs.datanode.http.address": f"{host}:{s.hdfs.datanode_http_port}",
                    "dfs.datanode.ipc.address": f"{host}:{s.hdfs.datanode_ipc_port}",
                    # WebHDFS redirects reads and writes to the DataNode by this name: keep it loopback.
                    "dfs.datanode.hostname": host,
                    "dfs.namenode.datanode.registration.ip-hostname-check": "false",
                    # One user on one machine; a real cluster keeps permissions on (and Kerberos).
                    "dfs.permissions.enabled": "false",
                    # Leave safe mode as soon as the blocks are reported, not 30 s later.
                    "dfs.namenode.safemode.extension": "0",
                    # A lake of small Parquet files on one disk: no space held back.
                    "dfs.datanode.du.reserved": "0",
                }
            )
        )
        (conf / "log4j.properties").write_text(_LOG4J)
        return conf

    def _jvm(self, conf: Path, daemon: str) -> list[str]:
        s = self.settings
        return [
            s.java,
            f"-Xmx{s.hdfs.heap_mb}m",
            "-XX:+UseG1GC",
            "-Djava.net.preferIPv4Stack=true",
            "-Djava.awt.headless=true",
            f"-Dhadoop.log.dir={s.home / 'logs'}",
            f"-Dhadoop.home.dir={self.dir}",
            f"-Dhadoop.id.str={s.hdfs.user}",
            f"-Dproc_{daemon}",
            *_JPMS_OPENS,
            "-cp",
            self._classpath(conf),
        ]

    def _format_once(self, conf: Path) -> None:
        """`hdfs namenode -format` on first start only: formatting again would orphan the blocks."""
        if (self.dir / "name" / "current" / "VERSION").exists():
            return
        run_java(
            [
                *self._jvm(conf, "namenode"),
                _NAMENODE,
                "-format",
                "-nonInteractive",
                "-clusterid",
                "streamwarden",
            ],
            "hdfs: namenode -format",
        )

    def start(self) -> None:
        if self.namenode.pid() is not None and self.datanode.pid() is not None:
            return
        host = self.settings.hdfs_namenode[0]
        if self.namenode.pid() is None and self.datanode.pid() is None:
            for port in self._ports():
                require_free_port(host, port, "hdfs")
        conf = self._write_conf()
        self._format_once(conf)
        self.namenode.start([*self._jvm(conf, "namenode"), _NAMENODE])
        self.datanode.start([*self._jvm(conf, "datanode"), _DATANODE])

    def health(self) -> Health:
        """Healthy when the NameNode is out of safe mode with a live DataNode (its JMX says so)."""
        url = f"{self.settings.webhdfs_url}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
        response = http_get(url)
        if isinstance(response, Health):
            return response
        try:
            beans = response.json()["beans"]
        except (ValueError, KeyError):
            return Health(State.DOWN, f"the NameNode answered HTTP {response.status_code} without its state: {url}")
        if not beans:
            return Health(State.DOWN, "the NameNode has not started its namesystem yet")
        state = beans[0]
        live = int(state.get("NumLiveDataNodes", 0))
        if live < 1:
            return Health(State.DOWN, "the NameNode has no live DataNode")
        if state.get("FSState") != "Operational":
            return Health(State.DOWN, f"the NameNode is in {state.get('FSState')} (safe mode)")
        used_mb = int(state.get("CapacityUsed", 0)) / 1e6
        return Health(
            State.UP,
            f"{live} DataNode, {int(state.get('BlocksTotal', 0))} blocks, {used_mb:,.0f} MB used",
        )

    def exited_early(self) -> str | None:
        for process in (self.namenode, self.datanode):
            if (why := process.exited_early()) is not None:
                return f"{process.name}: {why}"
        return None

    def is_running(self) -> bool:
        return self.namenode.pid() is not None or self.datanode.pid() is not None

    def stop(self) -> bool:
        # The DataNode first: stopped the other way round it retries its NameNode for a while.
        stopped_datanode = self.datanode.stop()
        stopped_namenode = self.namenode.stop()
        return stopped_datanode or stopped_namenode
