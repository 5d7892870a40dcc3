"""What vrfer knows of a setup and a person, all of it heads on the network's representation (the weights stay
FER+ only): adapt (a setup's batch-norm statistics and last layer), calibration (a person's profile from their
labelled faces) and profile_check (the one reader of profiles), reference (the wearer's neutral face, fixed or
learnt over a stream, and the referenced head), evaluate_personal (each of them scored so that no face is scored by a
fit that saw it)."""
