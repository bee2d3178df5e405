"""The automation service: mines the manual action sequences people repeat after the same kind of trigger,
checks them with a next-action model, validates them for safety, maps them to automation templates and
runs the human approval workflow (suggested -> approved / rejected / expired).

Modules: ``process_log`` (real process logs, time split, prefixes), ``model`` (next-action LSTM, training,
verified ONNX export, ONNX scorer), ``sequences`` (events -> per-person, per-trigger action sequences),
``miner`` (PrefixSpan with support and confidence; frequent-bigram baseline), ``suggest`` (miner AND model),
``validate`` (safety rules and dry run), ``templates`` (template library; matching through the nlp
service's Embed, structural when it is unreachable), ``approval`` (the Redis state machine with its audit
trail and weekly analytics), ``demo`` (found / missed / wrong vs the simulator's planted truth, and one
suggestion approved through the gateway).
"""
