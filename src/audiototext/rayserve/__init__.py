"""Live streams on a Ray Serve cluster (an adapter over the server; the only place Serve is
imported): :mod:`.replica` is one replica's engine and stream layer, :mod:`.deploy` the
application (consistent hashing by session, autoscaling) and how it is started."""
