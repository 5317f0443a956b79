"""The Go types of the JSON bodies Berth reads, as Docker's API types (v1.45) declare them.

Names of struct types are Go's, so errors read as dockerd's do.
"""

from __future__ import annotations

from berth.api.schema import (
    ANY,
    BOOL,
    DURATION,
    FILEMODE,
    INT,
    INT64,
    STR,
    UINT,
    UINT16,
    UINT64,
    Empty,
    List,
    Map,
    StrSlice,
    Struct,
    embed,
)

STRS = List(STR)
STRMAP = Map(STR)

HEALTH = Struct("HealthConfig", {
    "Test": STRS, "Interval": DURATION, "Timeout": DURATION, "StartPeriod": DURATION, "StartInterval": DURATION,
    "Retries": INT,
}, "container")

CONFIG_FIELDS = {
    "Hostname": STR, "Domainname": STR, "User": STR, "AttachStdin": BOOL, "AttachStdout": BOOL, "AttachStderr": BOOL,
    "ExposedPorts": Map(Empty()), "Tty": BOOL, "OpenStdin": BOOL, "StdinOnce": BOOL, "Env": STRS, "Cmd": StrSlice(),
    "Healthcheck": HEALTH, "ArgsEscaped": BOOL, "Image": STR, "Volumes": Map(Empty()), "WorkingDir": STR,
    "Entrypoint": StrSlice(), "NetworkDisabled": BOOL, "MacAddress": STR, "OnBuild": STRS, "Labels": STRMAP,
    "StopSignal": STR, "StopTimeout": INT, "Shell": StrSlice(),
}
CONFIG = Struct("Config", CONFIG_FIELDS, "container")

_THROTTLE = List(Struct("ThrottleDevice", {"Path": STR, "Rate": UINT64}, "blkiodev"))
RESOURCES = {
    "CpuShares": INT64, "Memory": INT64, "NanoCpus": INT64, "CgroupParent": STR, "BlkioWeight": UINT16,
    "BlkioWeightDevice": List(Struct("WeightDevice", {"Path": STR, "Weight": UINT16}, "blkiodev")),
    "BlkioDeviceReadBps": _THROTTLE, "BlkioDeviceWriteBps": _THROTTLE, "BlkioDeviceReadIOps": _THROTTLE,
    "BlkioDeviceWriteIOps": _THROTTLE, "CpuPeriod": INT64, "CpuQuota": INT64, "CpuRealtimePeriod": INT64,
    "CpuRealtimeRuntime": INT64, "CpusetCpus": STR, "CpusetMems": STR,
    "Devices": List(Struct("DeviceMapping", {"PathOnHost": STR, "PathInContainer": STR, "CgroupPermissions": STR},
                           "container")),
    "DeviceCgroupRules": STRS,
    "DeviceRequests": List(Struct("DeviceRequest", {"Driver": STR, "Count": INT, "DeviceIDs": STRS,
                                                    "Capabilities": List(STRS), "Options": STRMAP}, "container")),
    "KernelMemory": INT64, "KernelMemoryTCP": INT64, "MemoryReservation": INT64, "MemorySwap": INT64,
    "MemorySwappiness": INT64, "OomKillDisable": BOOL, "PidsLimit": INT64,
    "Ulimits": List(Struct("Ulimit", {"Name": STR, "Hard": INT64, "Soft": INT64}, "units")),
    "CpuCount": INT64, "CpuPercent": INT64, "IOMaximumIOps": UINT64, "IOMaximumBandwidth": UINT64,
}

MOUNT = Struct("Mount", {
    "Type": STR, "Source": STR, "Target": STR, "ReadOnly": BOOL, "Consistency": STR,
    "BindOptions": Struct("BindOptions", {"Propagation": STR, "NonRecursive": BOOL, "CreateMountpoint": BOOL,
                                          "ReadOnlyNonRecursive": BOOL, "ReadOnlyForceRecursive": BOOL}, "mount"),
    "VolumeOptions": Struct("VolumeOptions", {
        "NoCopy": BOOL, "Labels": STRMAP, "Subpath": STR,
        "DriverConfig": Struct("Driver", {"Name": STR, "Options": STRMAP}, "mount")}, "mount"),
    "TmpfsOptions": Struct("TmpfsOptions", {"SizeBytes": INT64, "Mode": FILEMODE, "Options": List(STRS)}, "mount"),
    "ClusterOptions": Struct("ClusterOptions", {}, "mount"),
}, "mount")

HOST_CONFIG = Struct("HostConfig", embed(RESOURCES, {
    "Binds": STRS, "ContainerIDFile": STR,
    "LogConfig": Struct("LogConfig", {"Type": STR, "Config": STRMAP}, "container"),
    "NetworkMode": STR,
    "PortBindings": Map(List(Struct("PortBinding", {"HostIp": STR, "HostPort": STR}, "nat"))),
    "RestartPolicy": Struct("RestartPolicy", {"Name": STR, "MaximumRetryCount": INT}, "container"),
    "AutoRemove": BOOL, "VolumeDriver": STR, "VolumesFrom": STRS, "ConsoleSize": List(UINT, fixed=2),
    "Annotations": STRMAP, "CapAdd": StrSlice(), "CapDrop": StrSlice(), "CgroupnsMode": STR, "Dns": STRS,
    "DnsOptions": STRS, "DnsSearch": STRS, "ExtraHosts": STRS, "GroupAdd": STRS, "IpcMode": STR, "Cgroup": STR,
    "Links": STRS, "OomScoreAdj": INT, "PidMode": STR, "Privileged": BOOL, "PublishAllPorts": BOOL,
    "ReadonlyRootfs": BOOL, "SecurityOpt": STRS, "StorageOpt": STRMAP, "Tmpfs": STRMAP, "UTSMode": STR,
    "UsernsMode": STR, "ShmSize": INT64, "Sysctls": STRMAP, "Runtime": STR, "Isolation": STR,
    "Mounts": List(MOUNT), "MaskedPaths": STRS, "ReadonlyPaths": STRS, "Init": BOOL,
}), "container")

UPDATE_CONFIG = Struct("UpdateConfig", embed(RESOURCES, {
    "RestartPolicy": Struct("RestartPolicy", {"Name": STR, "MaximumRetryCount": INT}, "container"),
}), "container")

ENDPOINT = Struct("EndpointSettings", {
    "IPAMConfig": Struct("EndpointIPAMConfig", {"IPv4Address": STR, "IPv6Address": STR, "LinkLocalIPs": STRS},
                         "network"),
    "Links": STRS, "MacAddress": STR, "Aliases": STRS, "DriverOpts": STRMAP, "NetworkID": STR, "EndpointID": STR,
    "Gateway": STR, "IPAddress": STR, "IPPrefixLen": INT, "IPv6Gateway": STR, "GlobalIPv6Address": STR,
    "GlobalIPv6PrefixLen": INT, "DNSNames": STRS,
}, "network")
NETWORKING_CONFIG = Struct("NetworkingConfig", {"EndpointsConfig": Map(ENDPOINT)}, "network")

CREATE_REQUEST = Struct("CreateRequest", embed(CONFIG_FIELDS, HostConfig=HOST_CONFIG,
                                               NetworkingConfig=NETWORKING_CONFIG), "container")

EXEC_CONFIG = Struct("ExecConfig", {
    "User": STR, "Privileged": BOOL, "Tty": BOOL, "ConsoleSize": List(UINT, fixed=2), "AttachStdin": BOOL,
    "AttachStderr": BOOL, "AttachStdout": BOOL, "Detach": BOOL, "DetachKeys": STR, "Env": STRS, "WorkingDir": STR,
    "Cmd": STRS,
}, "types")
EXEC_START = Struct("ExecStartCheck", {"Detach": BOOL, "Tty": BOOL, "ConsoleSize": List(UINT, fixed=2)}, "types")

VOLUME_CREATE = Struct("CreateOptions", {"ClusterVolumeSpec": ANY, "Driver": STR, "DriverOpts": STRMAP,
                                         "Labels": STRMAP, "Name": STR}, "volume")

AUTH_CONFIG = Struct("AuthConfig", {"Username": STR, "Password": STR, "Auth": STR, "Email": STR,
                                    "ServerAddress": STR, "IdentityToken": STR, "RegistryToken": STR}, "registry")
