"""The nurses' station page: accounts and sessions (:mod:`.auth`), routes (:mod:`.web`)."""
