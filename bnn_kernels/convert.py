class ConversionReport: pass
def convert(*a, **k): raise NotImplementedError
