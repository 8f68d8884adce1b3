"""Planning studies: a YAML study file (:mod:`.spec`) run by ``lvplan study`` (:mod:`.run`):
hosting map, application replay under each policy limit (:mod:`.replay`), land-parcel demand
planned year by year, figures (:mod:`.figures`) and the report (:mod:`.report`)."""
