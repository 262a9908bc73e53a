; Jungfrau 4M at CXI, for peaknet-serve's tests: 8 modules x 8 ASICs, slab layout
; (module N at rows N*512).

clen = 0.0875
photon_energy = /LCLS/photon_energy_eV
adu_per_photon = 1
res = 13333.3   ; 75 um
flag_lessthan = -10

data = /entry_1/data_1/data
dim0 = %
dim1 = ss
dim2 = fs

bad_p5a3/min_fs = 768
bad_p5a3/max_fs = 1023
bad_p5a3/min_ss = 2560
bad_p5a3/max_ss = 2815
bad_p5a3/panel = p5a3

p0a0/min_fs = 0
p0a0/min_ss = 0
p0a0/max_fs = 255
p0a0/max_ss = 255
p0a0/fs = +1.000000x +0.000689y
p0a0/ss = -0.000689x +1.000000y
p0a0/corner_x = -1030.000
p0a0/corner_y = -1090.000
p0a0/coffset = 0.000107

p0a1/min_fs = 256
p0a1/min_ss = 0
p0a1/max_fs = 511
p0a1/max_ss = 255
p0a1/fs = +1.000000x +0.000689y
p0a1/ss = -0.000689x +1.000000y
p0a1/corner_x = -772.000
p0a1/corner_y = -1089.822
p0a1/coffset = -0.000117

p0a2/min_fs = 512
p0a2/min_ss = 0
p0a2/max_fs = 767
p0a2/max_ss = 255
p0a2/fs = +1.000000x +0.000689y
p0a2/ss = -0.000689x +1.000000y
p0a2/corner_x = -514.000
p0a2/corner_y = -1089.645
p0a2/coffset = 0.000020

p0a3/min_fs = 768
p0a3/min_ss = 0
p0a3/max_fs = 1023
p0a3/max_ss = 255
p0a3/fs = +1.000000x +0.000689y
p0a3/ss = -0.000689x +1.000000y
p0a3/corner_x = -256.000
p0a3/corner_y = -1089.467
p0a3/coffset = 0.000036

p0a4/min_fs = 0
p0a4/min_ss = 256
p0a4/max_fs = 255
p0a4/max_ss = 511
p0a4/fs = +1.000000x +0.000689y
p0a4/ss = -0.000689x +1.000000y
p0a4/corner_x = -1030.178
p0a4/corner_y = -832.000
p0a4/coffset = 0.000109

p0a5/min_fs = 256
p0a5/min_ss = 256
p0a5/max_fs = 511
p0a5/max_ss = 511
p0a5/fs = +1.000000x +0.000689y
p0a5/ss = -0.000689x +1.000000y
p0a5/corner_x = -772.178
p0a5/corner_y = -831.822
p0a5/coffset = -0.000062

p0a6/min_fs = 512
p0a6/min_ss = 256
p0a6/max_fs = 767
p0a6/max_ss = 511
p0a6/fs = +1.000000x +0.000689y
p0a6/ss = -0.000689x +1.000000y
p0a6/corner_x = -514.178
p0a6/corner_y = -831.645
p0a6/coffset = 0.000057

p0a7/min_fs = 768
p0a7/min_ss = 256
p0a7/max_fs = 1023
p0a7/max_ss = 511
p0a7/fs = +1.000000x +0.000689y
p0a7/ss = -0.000689x +1.000000y
p0a7/corner_x = -256.178
p0a7/corner_y = -831.467
p0a7/coffset = 0.000043

p1a0/min_fs = 0
p1a0/min_ss = 512
p1a0/max_fs = 255
p1a0/max_ss = 767
p1a0/fs = +0.999999x -0.001524y
p1a0/ss = +0.001524x +0.999999y
p1a0/corner_x = -1030.000
p1a0/corner_y = -545.000
p1a0/coffset = -0.000104

p1a1/min_fs = 256
p1a1/min_ss = 512
p1a1/max_fs = 511
p1a1/max_ss = 767
p1a1/fs = +0.999999x -0.001524y
p1a1/ss = +0.001524x +0.999999y
p1a1/corner_x = -772.000
p1a1/corner_y = -545.393
p1a1/coffset = 0.000044

p1a2/min_fs = 512
p1a2/min_ss = 512
p1a2/max_fs = 767
p1a2/max_ss = 767
p1a2/fs = +0.999999x -0.001524y
p1a2/ss = +0.001524x +0.999999y
p1a2/corner_x = -514.001
p1a2/corner_y = -545.787
p1a2/coffset = -0.000118

p1a3/min_fs = 768
p1a3/min_ss = 512
p1a3/max_fs = 1023
p1a3/max_ss = 767
p1a3/fs = +0.999999x -0.001524y
p1a3/ss = +0.001524x +0.999999y
p1a3/corner_x = -256.001
p1a3/corner_y = -546.180
p1a3/coffset = -0.000123

p1a4/min_fs = 0
p1a4/min_ss = 768
p1a4/max_fs = 255
p1a4/max_ss = 1023
p1a4/fs = +0.999999x -0.001524y
p1a4/ss = +0.001524x +0.999999y
p1a4/corner_x = -1029.607
p1a4/corner_y = -287.000
p1a4/coffset = 0.000090

p1a5/min_fs = 256
p1a5/min_ss = 768
p1a5/max_fs = 511
p1a5/max_ss = 1023
p1a5/fs = +0.999999x -0.001524y
p1a5/ss = +0.001524x +0.999999y
p1a5/corner_x = -771.607
p1a5/corner_y = -287.394
p1a5/coffset = 0.000029

p1a6/min_fs = 512
p1a6/min_ss = 768
p1a6/max_fs = 767
p1a6/max_ss = 1023
p1a6/fs = +0.999999x -0.001524y
p1a6/ss = +0.001524x +0.999999y
p1a6/corner_x = -513.607
p1a6/corner_y = -287.787
p1a6/coffset = -0.000024

p1a7/min_fs = 768
p1a7/min_ss = 768
p1a7/max_fs = 1023
p1a7/max_ss = 1023
p1a7/fs = +0.999999x -0.001524y
p1a7/ss = +0.001524x +0.999999y
p1a7/corner_x = -255.608
p1a7/corner_y = -288.180
p1a7/coffset = 0.000011

p2a0/min_fs = 0
p2a0/min_ss = 1024
p2a0/max_fs = 255
p2a0/max_ss = 1279
p2a0/fs = +1.000000x -0.000405y
p2a0/ss = +0.000405x +1.000000y
p2a0/corner_x = -1030.000
p2a0/corner_y = 0.000
p2a0/coffset = -0.000054

p2a1/min_fs = 256
p2a1/min_ss = 1024
p2a1/max_fs = 511
p2a1/max_ss = 1279
p2a1/fs = +1.000000x -0.000405y
p2a1/ss = +0.000405x +1.000000y
p2a1/corner_x = -772.000
p2a1/corner_y = -0.104
p2a1/coffset = -0.000046

p2a2/min_fs = 512
p2a2/min_ss = 1024
p2a2/max_fs = 767
p2a2/max_ss = 1279
p2a2/fs = +1.000000x -0.000405y
p2a2/ss = +0.000405x +1.000000y
p2a2/corner_x = -514.000
p2a2/corner_y = -0.209
p2a2/coffset = 0.000039

p2a3/min_fs = 768
p2a3/min_ss = 1024
p2a3/max_fs = 1023
p2a3/max_ss = 1279
p2a3/fs = +1.000000x -0.000405y
p2a3/ss = +0.000405x +1.000000y
p2a3/corner_x = -256.000
p2a3/corner_y = -0.313
p2a3/coffset = 0.000132

p2a4/min_fs = 0
p2a4/min_ss = 1280
p2a4/max_fs = 255
p2a4/max_ss = 1535
p2a4/fs = +1.000000x -0.000405y
p2a4/ss = +0.000405x +1.000000y
p2a4/corner_x = -1029.896
p2a4/corner_y = 258.000
p2a4/coffset = -0.000047

p2a5/min_fs = 256
p2a5/min_ss = 1280
p2a5/max_fs = 511
p2a5/max_ss = 1535
p2a5/fs = +1.000000x -0.000405y
p2a5/ss = +0.000405x +1.000000y
p2a5/corner_x = -771.896
p2a5/corner_y = 257.896
p2a5/coffset = -0.000007

p2a6/min_fs = 512
p2a6/min_ss = 1280
p2a6/max_fs = 767
p2a6/max_ss = 1535
p2a6/fs = +1.000000x -0.000405y
p2a6/ss = +0.000405x +1.000000y
p2a6/corner_x = -513.896
p2a6/corner_y = 257.791
p2a6/coffset = -0.000022

p2a7/min_fs = 768
p2a7/min_ss = 1280
p2a7/max_fs = 1023
p2a7/max_ss = 1535
p2a7/fs = +1.000000x -0.000405y
p2a7/ss = +0.000405x +1.000000y
p2a7/corner_x = -255.896
p2a7/corner_y = 257.687
p2a7/coffset = -0.000126

p3a0/min_fs = 0
p3a0/min_ss = 1536
p3a0/max_fs = 255
p3a0/max_ss = 1791
p3a0/fs = +1.000000x +0.000252y
p3a0/ss = -0.000252x +1.000000y
p3a0/corner_x = -1030.000
p3a0/corner_y = 545.000
p3a0/coffset = 0.000087

p3a1/min_fs = 256
p3a1/min_ss = 1536
p3a1/max_fs = 511
p3a1/max_ss = 1791
p3a1/fs = +1.000000x +0.000252y
p3a1/ss = -0.000252x +1.000000y
p3a1/corner_x = -772.000
p3a1/corner_y = 545.065
p3a1/coffset = -0.000084

p3a2/min_fs = 512
p3a2/min_ss = 1536
p3a2/max_fs = 767
p3a2/max_ss = 1791
p3a2/fs = +1.000000x +0.000252y
p3a2/ss = -0.000252x +1.000000y
p3a2/corner_x = -514.000
p3a2/corner_y = 545.130
p3a2/coffset = 0.000083

p3a3/min_fs = 768
p3a3/min_ss = 1536
p3a3/max_fs = 1023
p3a3/max_ss = 1791
p3a3/fs = +1.000000x +0.000252y
p3a3/ss = -0.000252x +1.000000y
p3a3/corner_x = -256.000
p3a3/corner_y = 545.195
p3a3/coffset = -0.000057

p3a4/min_fs = 0
p3a4/min_ss = 1792
p3a4/max_fs = 255
p3a4/max_ss = 2047
p3a4/fs = +1.000000x +0.000252y
p3a4/ss = -0.000252x +1.000000y
p3a4/corner_x = -1030.065
p3a4/corner_y = 803.000
p3a4/coffset = 0.000115

p3a5/min_fs = 256
p3a5/min_ss = 1792
p3a5/max_fs = 511
p3a5/max_ss = 2047
p3a5/fs = +1.000000x +0.000252y
p3a5/ss = -0.000252x +1.000000y
p3a5/corner_x = -772.065
p3a5/corner_y = 803.065
p3a5/coffset = 0.000122

p3a6/min_fs = 512
p3a6/min_ss = 1792
p3a6/max_fs = 767
p3a6/max_ss = 2047
p3a6/fs = +1.000000x +0.000252y
p3a6/ss = -0.000252x +1.000000y
p3a6/corner_x = -514.065
p3a6/corner_y = 803.130
p3a6/coffset = -0.000038

p3a7/min_fs = 768
p3a7/min_ss = 1792
p3a7/max_fs = 1023
p3a7/max_ss = 2047
p3a7/fs = +1.000000x +0.000252y
p3a7/ss = -0.000252x +1.000000y
p3a7/corner_x = -256.065
p3a7/corner_y = 803.195
p3a7/coffset = -0.000200

p4a0/min_fs = 0
p4a0/min_ss = 2048
p4a0/max_fs = 255
p4a0/max_ss = 2303
p4a0/fs = -1.000000x +0.000348y
p4a0/ss = -0.000348x -1.000000y
p4a0/corner_x = 1030.000
p4a0/corner_y = 1090.000
p4a0/coffset = -0.000139

p4a1/min_fs = 256
p4a1/min_ss = 2048
p4a1/max_fs = 511
p4a1/max_ss = 2303
p4a1/fs = -1.000000x +0.000348y
p4a1/ss = -0.000348x -1.000000y
p4a1/corner_x = 772.000
p4a1/corner_y = 1090.090
p4a1/coffset = -0.000131

p4a2/min_fs = 512
p4a2/min_ss = 2048
p4a2/max_fs = 767
p4a2/max_ss = 2303
p4a2/fs = -1.000000x +0.000348y
p4a2/ss = -0.000348x -1.000000y
p4a2/corner_x = 514.000
p4a2/corner_y = 1090.180
p4a2/coffset = -0.000025

p4a3/min_fs = 768
p4a3/min_ss = 2048
p4a3/max_fs = 1023
p4a3/max_ss = 2303
p4a3/fs = -1.000000x +0.000348y
p4a3/ss = -0.000348x -1.000000y
p4a3/corner_x = 256.000
p4a3/corner_y = 1090.269
p4a3/coffset = 0.000136

p4a4/min_fs = 0
p4a4/min_ss = 2304
p4a4/max_fs = 255
p4a4/max_ss = 2559
p4a4/fs = -1.000000x +0.000348y
p4a4/ss = -0.000348x -1.000000y
p4a4/corner_x = 1029.910
p4a4/corner_y = 832.000
p4a4/coffset = -0.000009

p4a5/min_fs = 256
p4a5/min_ss = 2304
p4a5/max_fs = 511
p4a5/max_ss = 2559
p4a5/fs = -1.000000x +0.000348y
p4a5/ss = -0.000348x -1.000000y
p4a5/corner_x = 771.910
p4a5/corner_y = 832.090
p4a5/coffset = -0.000022

p4a6/min_fs = 512
p4a6/min_ss = 2304
p4a6/max_fs = 767
p4a6/max_ss = 2559
p4a6/fs = -1.000000x +0.000348y
p4a6/ss = -0.000348x -1.000000y
p4a6/corner_x = 513.910
p4a6/corner_y = 832.180
p4a6/coffset = -0.000185

p4a7/min_fs = 768
p4a7/min_ss = 2304
p4a7/max_fs = 1023
p4a7/max_ss = 2559
p4a7/fs = -1.000000x +0.000348y
p4a7/ss = -0.000348x -1.000000y
p4a7/corner_x = 255.910
p4a7/corner_y = 832.269
p4a7/coffset = -0.000061

p5a0/min_fs = 0
p5a0/min_ss = 2560
p5a0/max_fs = 255
p5a0/max_ss = 2815
p5a0/fs = -0.999999x +0.001395y
p5a0/ss = -0.001395x -0.999999y
p5a0/corner_x = 1030.000
p5a0/corner_y = 545.000
p5a0/coffset = 0.000052

p5a1/min_fs = 256
p5a1/min_ss = 2560
p5a1/max_fs = 511
p5a1/max_ss = 2815
p5a1/fs = -0.999999x +0.001395y
p5a1/ss = -0.001395x -0.999999y
p5a1/corner_x = 772.000
p5a1/corner_y = 545.360
p5a1/coffset = -0.000053

p5a2/min_fs = 512
p5a2/min_ss = 2560
p5a2/max_fs = 767
p5a2/max_ss = 2815
p5a2/fs = -0.999999x +0.001395y
p5a2/ss = -0.001395x -0.999999y
p5a2/corner_x = 514.001
p5a2/corner_y = 545.720
p5a2/coffset = -0.000004

p5a3/min_fs = 768
p5a3/min_ss = 2560
p5a3/max_fs = 1023
p5a3/max_ss = 2815
p5a3/fs = -0.999999x +0.001395y
p5a3/ss = -0.001395x -0.999999y
p5a3/corner_x = 256.001
p5a3/corner_y = 546.080
p5a3/coffset = -0.000002

p5a4/min_fs = 0
p5a4/min_ss = 2816
p5a4/max_fs = 255
p5a4/max_ss = 3071
p5a4/fs = -0.999999x +0.001395y
p5a4/ss = -0.001395x -0.999999y
p5a4/corner_x = 1029.640
p5a4/corner_y = 287.000
p5a4/coffset = -0.000019

p5a5/min_fs = 256
p5a5/min_ss = 2816
p5a5/max_fs = 511
p5a5/max_ss = 3071
p5a5/fs = -0.999999x +0.001395y
p5a5/ss = -0.001395x -0.999999y
p5a5/corner_x = 771.640
p5a5/corner_y = 287.360
p5a5/coffset = 0.000095

p5a6/min_fs = 512
p5a6/min_ss = 2816
p5a6/max_fs = 767
p5a6/max_ss = 3071
p5a6/fs = -0.999999x +0.001395y
p5a6/ss = -0.001395x -0.999999y
p5a6/corner_x = 513.641
p5a6/corner_y = 287.720
p5a6/coffset = 0.000049

p5a7/min_fs = 768
p5a7/min_ss = 2816
p5a7/max_fs = 1023
p5a7/max_ss = 3071
p5a7/fs = -0.999999x +0.001395y
p5a7/ss = -0.001395x -0.999999y
p5a7/corner_x = 255.641
p5a7/corner_y = 288.080
p5a7/coffset = -0.000032

p6a0/min_fs = 0
p6a0/min_ss = 3072
p6a0/max_fs = 255
p6a0/max_ss = 3327
p6a0/fs = -1.000000x -0.000154y
p6a0/ss = +0.000154x -1.000000y
p6a0/corner_x = 1030.000
p6a0/corner_y = 0.000
p6a0/coffset = 0.000055

p6a1/min_fs = 256
p6a1/min_ss = 3072
p6a1/max_fs = 511
p6a1/max_ss = 3327
p6a1/fs = -1.000000x -0.000154y
p6a1/ss = +0.000154x -1.000000y
p6a1/corner_x = 772.000
p6a1/corner_y = -0.040
p6a1/coffset = 0.000137

p6a2/min_fs = 512
p6a2/min_ss = 3072
p6a2/max_fs = 767
p6a2/max_ss = 3327
p6a2/fs = -1.000000x -0.000154y
p6a2/ss = +0.000154x -1.000000y
p6a2/corner_x = 514.000
p6a2/corner_y = -0.079
p6a2/coffset = 0.000013

p6a3/min_fs = 768
p6a3/min_ss = 3072
p6a3/max_fs = 1023
p6a3/max_ss = 3327
p6a3/fs = -1.000000x -0.000154y
p6a3/ss = +0.000154x -1.000000y
p6a3/corner_x = 256.000
p6a3/corner_y = -0.119
p6a3/coffset = 0.000145

p6a4/min_fs = 0
p6a4/min_ss = 3328
p6a4/max_fs = 255
p6a4/max_ss = 3583
p6a4/fs = -1.000000x -0.000154y
p6a4/ss = +0.000154x -1.000000y
p6a4/corner_x = 1030.040
p6a4/corner_y = -258.000
p6a4/coffset = -0.000059

p6a5/min_fs = 256
p6a5/min_ss = 3328
p6a5/max_fs = 511
p6a5/max_ss = 3583
p6a5/fs = -1.000000x -0.000154y
p6a5/ss = +0.000154x -1.000000y
p6a5/corner_x = 772.040
p6a5/corner_y = -258.040
p6a5/coffset = -0.000023

p6a6/min_fs = 512
p6a6/min_ss = 3328
p6a6/max_fs = 767
p6a6/max_ss = 3583
p6a6/fs = -1.000000x -0.000154y
p6a6/ss = +0.000154x -1.000000y
p6a6/corner_x = 514.040
p6a6/corner_y = -258.079
p6a6/coffset = -0.000149

p6a7/min_fs = 768
p6a7/min_ss = 3328
p6a7/max_fs = 1023
p6a7/max_ss = 3583
p6a7/fs = -1.000000x -0.000154y
p6a7/ss = +0.000154x -1.000000y
p6a7/corner_x = 256.040
p6a7/corner_y = -258.119
p6a7/coffset = 0.000082

p7a0/min_fs = 0
p7a0/min_ss = 3584
p7a0/max_fs = 255
p7a0/max_ss = 3839
p7a0/fs = -0.999999x +0.001033y
p7a0/ss = -0.001033x -0.999999y
p7a0/corner_x = 1030.000
p7a0/corner_y = -545.000
p7a0/coffset = -0.000103

p7a1/min_fs = 256
p7a1/min_ss = 3584
p7a1/max_fs = 511
p7a1/max_ss = 3839
p7a1/fs = -0.999999x +0.001033y
p7a1/ss = -0.001033x -0.999999y
p7a1/corner_x = 772.000
p7a1/corner_y = -544.734
p7a1/coffset = 0.000084

p7a2/min_fs = 512
p7a2/min_ss = 3584
p7a2/max_fs = 767
p7a2/max_ss = 3839
p7a2/fs = -0.999999x +0.001033y
p7a2/ss = -0.001033x -0.999999y
p7a2/corner_x = 514.000
p7a2/corner_y = -544.467
p7a2/coffset = -0.000053

p7a3/min_fs = 768
p7a3/min_ss = 3584
p7a3/max_fs = 1023
p7a3/max_ss = 3839
p7a3/fs = -0.999999x +0.001033y
p7a3/ss = -0.001033x -0.999999y
p7a3/corner_x = 256.000
p7a3/corner_y = -544.201
p7a3/coffset = -0.000075

p7a4/min_fs = 0
p7a4/min_ss = 3840
p7a4/max_fs = 255
p7a4/max_ss = 4095
p7a4/fs = -0.999999x +0.001033y
p7a4/ss = -0.001033x -0.999999y
p7a4/corner_x = 1029.734
p7a4/corner_y = -803.000
p7a4/coffset = 0.000095

p7a5/min_fs = 256
p7a5/min_ss = 3840
p7a5/max_fs = 511
p7a5/max_ss = 4095
p7a5/fs = -0.999999x +0.001033y
p7a5/ss = -0.001033x -0.999999y
p7a5/corner_x = 771.734
p7a5/corner_y = -802.733
p7a5/coffset = -0.000018

p7a6/min_fs = 512
p7a6/min_ss = 3840
p7a6/max_fs = 767
p7a6/max_ss = 4095
p7a6/fs = -0.999999x +0.001033y
p7a6/ss = -0.001033x -0.999999y
p7a6/corner_x = 513.734
p7a6/corner_y = -802.467
p7a6/coffset = 0.000092

p7a7/min_fs = 768
p7a7/min_ss = 3840
p7a7/max_fs = 1023
p7a7/max_ss = 4095
p7a7/fs = -0.999999x +0.001033y
p7a7/ss = -0.001033x -0.999999y
p7a7/corner_x = 255.734
p7a7/corner_y = -802.201
p7a7/coffset = -0.000040

group_p0 = p0a0,p0a1,p0a2,p0a3,p0a4,p0a5,p0a6,p0a7
group_p1 = p1a0,p1a1,p1a2,p1a3,p1a4,p1a5,p1a6,p1a7
group_p2 = p2a0,p2a1,p2a2,p2a3,p2a4,p2a5,p2a6,p2a7
group_p3 = p3a0,p3a1,p3a2,p3a3,p3a4,p3a5,p3a6,p3a7
group_p4 = p4a0,p4a1,p4a2,p4a3,p4a4,p4a5,p4a6,p4a7
group_p5 = p5a0,p5a1,p5a2,p5a3,p5a4,p5a5,p5a6,p5a7
group_p6 = p6a0,p6a1,p6a2,p6a3,p6a4,p6a5,p6a6,p6a7
group_p7 = p7a0,p7a1,p7a2,p7a3,p7a4,p7a5,p7a6,p7a7
group_all = p0,p1,p2,p3,p4,p5,p6,p7
