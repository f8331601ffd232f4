print("switchyard: not built yet")
